/** The last validation's problems, each with where it is (node, edge, field path); clicking
 *  one shows its node or edge on the canvas. */
import { CircleAlert, CircleCheck } from "lucide-react";
import { usePipelineEditor } from "../../stores/pipelineEditor";
import type { PipelineIssue } from "./document";
import { issuePath } from "./document";

export function IssuesPanel({ onShow }: { onShow: (issue: PipelineIssue) => void }) {
  const issues = usePipelineEditor((s) => s.issues);
  if (issues === null) return <p className="text-sm text-slate-500">Press Validate to check the pipeline.</p>;
  if (issues.length === 0)
    return (
      <p className="flex items-center gap-1.5 text-sm text-emerald-700" data-testid="validation-ok">
        <CircleCheck className="h-4 w-4" aria-hidden /> The pipeline is valid.
      </p>
    );
  return (
    <ul className="space-y-1.5" aria-label="Problems" data-testid="issues">
      {issues.map((issue, i) => (
        <li key={i}>
          <button
            type="button"
            onClick={() => onShow(issue)}
            className="flex w-full items-start gap-2 rounded-md border border-red-100 bg-red-50 p-2 text-left text-xs hover:border-red-300"
          >
            <CircleAlert className="mt-0.5 h-3.5 w-3.5 shrink-0 text-red-600" aria-hidden />
            <span className="min-w-0">
              <span className="block font-medium text-red-800">
                {issue.node_id ? `Node ${issue.node_id}` : issue.edge ? "Edge" : "Pipeline"}
                {issuePath(issue) ? <span className="ml-1 font-mono font-normal">{issuePath(issue)}</span> : null}
              </span>
              {issue.edge && <span className="block text-red-700">{issue.edge}</span>}
              <span className="block text-red-700">{issue.message}</span>
            </span>
          </button>
        </li>
      ))}
    </ul>
  );
}
