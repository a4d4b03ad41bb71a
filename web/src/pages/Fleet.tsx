import { PageHeader } from "../components/ui";

export default function FleetPage() {
  return <PageHeader title="Fleet" />;
}
