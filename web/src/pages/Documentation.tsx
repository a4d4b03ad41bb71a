import { PageHeader } from "../components/ui";

export default function DocumentationPage() {
  return <PageHeader title="Documentation" />;
}
