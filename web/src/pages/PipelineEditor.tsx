import { PageHeader } from "../components/ui";

export default function PipelineEditorPage() {
  return <PageHeader title="PipelineEditor" />;
}
