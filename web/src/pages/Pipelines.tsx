/**
 * Pipelines: every saved pipeline with the status of its newest run, its revision and when it
 * was last saved; open one in the builder; operators create and delete pipelines.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Plus, Trash2 } from "lucide-react";
import { useState } from "react";
import toast from "react-hot-toast";
import { Link, useNavigate } from "react-router-dom";
import { api, errorMessage } from "../api/client";
import type { Page, Run } from "../api/types";
import type { components } from "../api/schema";
import { RunStatusBadge } from "../components/pipeline/RunStatusBadge";
import { isActive, runsKey } from "../components/pipeline/runs";
import { Button, Card, EmptyState, ErrorNote, Modal, PageHeader, Spinner } from "../components/ui";
import { useDebouncedValue } from "../hooks/useDebouncedValue";
import { dateTime, timeAgo } from "../lib/format";
import { useCan } from "../stores/auth";

type PipelineOut = components["schemas"]["PipelineOut"];

function NewestRun({ pipelineId }: { pipelineId: string }) {
  const runs = useQuery({
    queryKey: runsKey(pipelineId),
    queryFn: () => api<Page<Run>>(`/pipelines/${pipelineId}/runs`, { query: { limit: 20 } }),
    refetchInterval: 10_000,
  });
  const run = runs.data?.items[0];
  if (runs.isLoading) return <span className="text-xs text-slate-400">…</span>;
  if (!run) return <RunStatusBadge status={null} />;
  return (
    <span className="inline-flex items-center gap-2">
      <RunStatusBadge status={run.status} />
      {!isActive(run.status) && <span className="text-xs text-slate-400">{timeAgo(run.stopped_at ?? run.started_at)}</span>}
      {isActive(run.status) && <span className="text-xs text-slate-400">r{run.revision}</span>}
    </span>
  );
}

export default function PipelinesPage() {
  const canEdit = useCan("operator");
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [search, setSearch] = useState("");
  const debounced = useDebouncedValue(search, 300);
  const [deleting, setDeleting] = useState<PipelineOut | null>(null);
  const pipelines = useQuery({
    queryKey: ["pipelines", debounced],
    queryFn: () => api<Page<PipelineOut>>("/pipelines", { query: { search: debounced, limit: 200 } }),
  });
  const remove = useMutation({
    mutationFn: (id: string) => api(`/pipelines/${id}`, { method: "DELETE" }),
    onSuccess: (_data, id) => {
      toast.success("Pipeline deleted");
      setDeleting(null);
      void queryClient.invalidateQueries({ queryKey: ["pipelines"] });
      queryClient.removeQueries({ queryKey: ["pipeline", id] });
    },
    onError: (err) => toast.error(errorMessage(err)),
  });

  return (
    <div>
      <PageHeader
        title="Pipelines"
        subtitle="Cameras, detection, zones, conditions and actions, drawn as graphs and played on the site."
        actions={
          canEdit && (
            <Button onClick={() => navigate("/pipelines/new")}>
              <Plus className="h-4 w-4" aria-hidden /> New pipeline
            </Button>
          )
        }
      />
      <Card>
        <label className="mb-3 block max-w-sm">
          <span className="sr-only">Search pipelines</span>
          <input
            type="search"
            placeholder="Search by name or id"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
            className="block w-full rounded-md border border-slate-300 px-2.5 py-1.5 text-sm focus:border-sky-500 focus:outline-none"
          />
        </label>
        {pipelines.isLoading ? (
          <Spinner />
        ) : pipelines.error ? (
          <ErrorNote error={pipelines.error} />
        ) : !pipelines.data?.items.length ? (
          <EmptyState>{debounced ? `No pipeline matches “${debounced}”.` : "No pipelines yet."}</EmptyState>
        ) : (
          <table className="w-full text-sm" aria-label="Pipelines">
            <thead>
              <tr className="border-b border-slate-200 text-left text-xs tracking-wide text-slate-500 uppercase">
                <th className="py-2 pr-3 font-medium">Name</th>
                <th className="py-2 pr-3 font-medium">Run</th>
                <th className="py-2 pr-3 font-medium">Revision</th>
                <th className="py-2 pr-3 font-medium">Updated</th>
                <th className="py-2 pr-3 font-medium">Created by</th>
                {canEdit && <th className="py-2 font-medium"><span className="sr-only">Actions</span></th>}
              </tr>
            </thead>
            <tbody>
              {pipelines.data.items.map((p) => (
                <tr key={p.id} className="border-b border-slate-100 hover:bg-slate-50" data-testid={`pipeline-row-${p.id}`}>
                  <td className="py-2 pr-3">
                    <Link to={`/pipelines/${p.id}`} className="font-medium text-sky-700 hover:underline">
                      {p.name}
                    </Link>
                    {p.description && <div className="line-clamp-1 max-w-xl text-xs text-slate-500">{p.description}</div>}
                  </td>
                  <td className="py-2 pr-3">
                    <NewestRun pipelineId={p.id} />
                  </td>
                  <td className="py-2 pr-3 text-slate-600">{p.latest_revision}</td>
                  <td className="py-2 pr-3 text-slate-600" title={dateTime(p.updated_at)}>
                    {timeAgo(p.updated_at)}
                  </td>
                  <td className="py-2 pr-3 text-slate-600">{p.created_by ?? "—"}</td>
                  {canEdit && (
                    <td className="py-2 text-right">
                      <Button variant="ghost" aria-label={`Delete ${p.name}`} title="Delete" onClick={() => setDeleting(p)}>
                        <Trash2 className="h-4 w-4" aria-hidden />
                      </Button>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
      <Modal
        title="Delete pipeline"
        open={deleting !== null}
        onClose={() => setDeleting(null)}
        footer={
          <>
            <Button variant="secondary" onClick={() => setDeleting(null)}>
              Cancel
            </Button>
            <Button variant="danger" busy={remove.isPending} onClick={() => deleting && remove.mutate(deleting.id)}>
              Delete
            </Button>
          </>
        }
      >
        <p className="text-sm text-slate-700">
          Delete <strong>{deleting?.name}</strong> and all its revisions? Its runs and events are kept. A running pipeline must be
          stopped first.
        </p>
      </Modal>
    </div>
  );
}
