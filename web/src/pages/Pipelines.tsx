import { PageHeader } from "../components/ui";

export default function PipelinesPage() {
  return <PageHeader title="Pipelines" />;
}
