import { PageHeader } from "../components/ui";

export default function DeviceDetailsPage() {
  return <PageHeader title="DeviceDetails" />;
}
