/**
 * The pipeline builder: palette, canvas, toolbar (name, revision, Validate, Save, Play,
 * Stop) and a side panel with the problems of the last validation and the run monitor.
 * `/pipelines/new` starts an empty document; `/pipelines/:pipelineId` edits a saved one
 * (each save is a new revision; saving over a revision someone else saved meanwhile is
 * refused and said so). Viewers see the canvas read-only and no edit or run controls.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { ReactFlowProvider, useReactFlow } from "@xyflow/react";
import clsx from "clsx";
import { ArrowLeft, CircleAlert, ListChecks, MonitorPlay, Play, Save, ShieldCheck, Square, Trash2 } from "lucide-react";
import { useCallback, useEffect, useRef, useState } from "react";
import toast from "react-hot-toast";
import { Link, useNavigate, useParams } from "react-router-dom";
import { api, ApiError, errorMessage } from "../api/client";
import type { components } from "../api/schema";
import type { EventRecord, Page, Run } from "../api/types";
import { isCameraType } from "../components/nodeform/catalog";
import { NodeConfigDialog } from "../components/nodeform/NodeConfigDialog";
import { nodeConfigIssues } from "../components/nodeform/schema";
import { useCatalog } from "../components/pipeline/catalog";
import type { FlowEdge, FlowNode, PipelineDocument, PipelineIssue, ValidationResult } from "../components/pipeline/document";
import { EditorCanvas } from "../components/pipeline/EditorCanvas";
import { IssuesPanel } from "../components/pipeline/IssuesPanel";
import { MonitorPanel } from "../components/pipeline/MonitorPanel";
import { Palette } from "../components/pipeline/Palette";
import { RunStatusBadge } from "../components/pipeline/RunStatusBadge";
import { EVENTS_KEPT, isActive, runEventsKey, runKey, runsKey } from "../components/pipeline/runs";
import { Button, ErrorNote, Spinner } from "../components/ui";
import { useFeed } from "../hooks/useFeed";
import { dateTime } from "../lib/format";
import { useCan } from "../stores/auth";
import { usePipelineEditor } from "../stores/pipelineEditor";

type PipelineDetail = components["schemas"]["PipelineDetail"];
type PipelineRevision = components["schemas"]["PipelineRevision"];

export const pipelineKey = (id: string | null) => ["pipeline", id] as const;
const revisionsKey = (id: string | null) => ["pipeline-revisions", id] as const;

const LEAVE_MESSAGE = "This pipeline has unsaved changes. Leave without saving?";

/** Ask before leaving with unsaved changes: reloads/closes (beforeunload) and in-app links. */
function useUnsavedGuard(dirty: boolean) {
  useEffect(() => {
    if (!dirty) return;
    const beforeUnload = (event: BeforeUnloadEvent) => {
      event.preventDefault();
      event.returnValue = "";
    };
    const onClick = (event: MouseEvent) => {
      const anchor = (event.target as Element | null)?.closest?.("a[href]");
      if (!anchor || anchor.getAttribute("target") === "_blank" || event.defaultPrevented) return;
      const url = new URL((anchor as HTMLAnchorElement).href, window.location.href);
      if (url.origin !== window.location.origin || url.pathname === window.location.pathname) return;
      if (!window.confirm(LEAVE_MESSAGE)) {
        event.preventDefault();
        event.stopPropagation();
      }
    };
    window.addEventListener("beforeunload", beforeUnload);
    document.addEventListener("click", onClick, true);
    return () => {
      window.removeEventListener("beforeunload", beforeUnload);
      document.removeEventListener("click", onClick, true);
    };
  }, [dirty]);
}

/** The nearest video source upstream of `nodeId` (what a zone or line is drawn on). */
function upstreamCamera(nodeId: string, nodes: FlowNode[], edges: FlowEdge[]): { type: string; config: Record<string, unknown> } | undefined {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const seen = new Set([nodeId]);
  let frontier = [nodeId];
  while (frontier.length) {
    const next: string[] = [];
    for (const id of frontier) {
      for (const e of edges) {
        if (e.target !== id || seen.has(e.source)) continue;
        const source = byId.get(e.source);
        if (!source) continue;
        if (isCameraType(source.data.nodeType)) return { type: source.data.nodeType, config: source.data.config };
        seen.add(e.source);
        next.push(e.source);
      }
    }
    frontier = next;
  }
  return undefined;
}

function Editor({ pipelineId }: { pipelineId: string | null }) {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const canEdit = useCan("operator");
  const readOnly = !canEdit;
  const catalog = useCatalog();
  const { fitView, setCenter, getNode, screenToFlowPosition } = useReactFlow();

  const name = usePipelineEditor((s) => s.meta.name) ?? "";
  const dirty = usePipelineEditor((s) => s.dirty);
  const nodes = usePipelineEditor((s) => s.nodes);
  const latestRevision = usePipelineEditor((s) => s.latestRevision);
  const shownRevision = usePipelineEditor((s) => s.shownRevision);
  const issues = usePipelineEditor((s) => s.issues);
  const hasSelection = usePipelineEditor((s) => s.nodes.some((n) => n.selected) || s.edges.some((e) => e.selected));
  const loadedId = usePipelineEditor((s) => s.pipelineId);

  const [panel, setPanel] = useState<"problems" | "monitor" | null>(pipelineId ? "monitor" : null);
  const [editing, setEditing] = useState<string | null>(null);
  const [conflict, setConflict] = useState<string | null>(null);
  const keepState = useRef(false);

  useUnsavedGuard(dirty && canEdit);

  useEffect(() => {
    if (catalog.data) usePipelineEditor.getState().setCatalog(catalog.data);
  }, [catalog.data]);

  // a fresh editor per page, except right after the first save of a new pipeline
  useEffect(() => {
    const s = usePipelineEditor.getState();
    if (!pipelineId || s.pipelineId !== pipelineId) s.reset(pipelineId ? "" : "Untitled pipeline");
    return () => {
      if (!keepState.current) usePipelineEditor.getState().reset();
    };
  }, [pipelineId]);

  const detail = useQuery({
    queryKey: pipelineKey(pipelineId),
    queryFn: () => api<PipelineDetail>(`/pipelines/${pipelineId}`),
    enabled: pipelineId !== null,
  });

  useEffect(() => {
    const d = detail.data;
    if (!d) return;
    const s = usePipelineEditor.getState();
    if (s.pipelineId === d.id && (s.latestRevision === d.latest_revision || s.dirty)) return;
    s.load(d.document as unknown as PipelineDocument, { pipelineId: d.id, latestRevision: d.latest_revision });
    requestAnimationFrame(() => void fitView({ padding: 0.2, maxZoom: 1 }));
  }, [detail.data, fitView]);

  const revisions = useQuery({
    queryKey: revisionsKey(pipelineId),
    queryFn: () => api<Page<PipelineRevision>>(`/pipelines/${pipelineId}/revisions`, { query: { limit: 100 } }),
    enabled: pipelineId !== null,
  });

  // the newest run drives Play/Stop; the live feed keeps runs, counters and events current
  const runs = useQuery({
    queryKey: runsKey(pipelineId ?? ""),
    queryFn: () => api<Page<Run>>(`/pipelines/${pipelineId}/runs`, { query: { limit: 20 } }),
    enabled: pipelineId !== null,
  });
  const newest = runs.data?.items[0];
  const newestRun = useQuery({
    queryKey: runKey(newest?.id ?? ""),
    queryFn: () => api<Run>(`/runs/${newest!.id}`),
    enabled: !!newest,
    initialData: newest,
  });
  const runStatus = newestRun.data?.status ?? null;
  const running = isActive(runStatus);
  const newestCounters = newestRun.data?.counters;
  useEffect(() => {
    usePipelineEditor.getState().setCounters((newestCounters as Record<string, unknown> | undefined) ?? null);
  }, [newestCounters]);

  useFeed(
    pipelineId ? `/ws/pipelines/${pipelineId}` : null,
    (message) => {
      if (!pipelineId) return;
      if (message.type === "run.status" && message.run && typeof message.run === "object") {
        const run = message.run as Run;
        queryClient.setQueryData(runKey(run.id ?? ""), run);
        queryClient.setQueryData<Page<Run>>(runsKey(pipelineId), (old) => {
          if (!old) return old;
          const known = old.items.some((r) => r.id === run.id);
          return { ...old, items: known ? old.items.map((r) => (r.id === run.id ? run : r)) : [run, ...old.items] };
        });
      } else if (message.type === "run.counters" && typeof message.run_id === "string") {
        queryClient.setQueryData<Run>(runKey(message.run_id), (old) =>
          old ? { ...old, counters: message.counters as Run["counters"] } : old,
        );
      } else if (message.type === "event" && typeof message.run_id === "string" && message.event) {
        const event = message.event as EventRecord;
        queryClient.setQueryData<EventRecord[]>(runEventsKey(message.run_id), (old) =>
          old ? [event, ...old.filter((e) => e.id !== event.id)].slice(0, EVENTS_KEPT) : old,
        );
      }
    },
    () => {
      if (!pipelineId) return;
      void queryClient.invalidateQueries({ queryKey: runsKey(pipelineId) });
      void queryClient.invalidateQueries({ queryKey: ["run"] });
      void queryClient.invalidateQueries({ queryKey: ["run-events"] });
    },
  );

  const showIssues = useCallback((list: PipelineIssue[]) => {
    usePipelineEditor.getState().setIssues(list);
    if (list.length) setPanel("problems");
  }, []);

  const validate = useMutation({
    mutationFn: () => api<ValidationResult>("/pipelines/validate", { method: "POST", body: usePipelineEditor.getState().document() }),
    onSuccess: (result) => {
      showIssues(result.issues);
      if (result.valid) toast.success("The pipeline is valid");
      else toast.error(`${result.issues.length} problem${result.issues.length === 1 ? "" : "s"} found`, { id: "validation" });
    },
    onError: (err) => toast.error(errorMessage(err)),
  });

  // once validated, keep the problems current while editing
  const changes = usePipelineEditor((s) => (s.issues === null ? null : JSON.stringify(s.document())));
  const lastChecked = useRef<string | null>(null);
  useEffect(() => {
    if (changes === null) {
      lastChecked.current = null;
      return;
    }
    if (lastChecked.current === null) {
      lastChecked.current = changes;
      return;
    }
    if (changes === lastChecked.current) return;
    const timer = setTimeout(() => {
      lastChecked.current = changes;
      api<ValidationResult>("/pipelines/validate", { method: "POST", body: JSON.parse(changes) })
        .then((result) => {
          if (JSON.stringify(usePipelineEditor.getState().document()) === changes) usePipelineEditor.getState().setIssues(result.issues);
        })
        .catch(() => undefined);
    }, 600);
    return () => clearTimeout(timer);
  }, [changes]);

  const save = useMutation({
    mutationFn: () => {
      const s = usePipelineEditor.getState();
      const document = s.document();
      if (!s.pipelineId) return api<PipelineDetail>("/pipelines", { method: "POST", body: document });
      return api<PipelineDetail>(`/pipelines/${s.pipelineId}`, {
        method: "PUT",
        body: { expected_revision: s.latestRevision, document },
      });
    },
    onSuccess: (saved) => {
      queryClient.setQueryData(pipelineKey(saved.id), saved);
      usePipelineEditor.getState().markSaved(saved.id, saved.latest_revision);
      usePipelineEditor.getState().setIssues((saved.validation.issues ?? []) as PipelineIssue[]);
      setConflict(null);
      void queryClient.invalidateQueries({ queryKey: ["pipelines"] });
      void queryClient.invalidateQueries({ queryKey: revisionsKey(saved.id) });
      const problems = saved.validation.issues?.length ?? 0;
      toast.success(
        `Saved revision ${saved.latest_revision}${problems ? ` (${problems} problem${problems === 1 ? "" : "s"} to fix before Play)` : ""}`,
      );
      if (!pipelineId) {
        keepState.current = true;
        navigate(`/pipelines/${saved.id}`, { replace: true });
      }
    },
    onError: (err) => {
      if (err instanceof ApiError && err.status === 409) setConflict(err.message);
      else toast.error(errorMessage(err));
    },
  });

  const play = useMutation({
    mutationFn: () => api<Run>(`/pipelines/${pipelineId}/execute`, { method: "POST" }),
    onSuccess: (run) => {
      queryClient.setQueryData(runKey(run.id ?? ""), run);
      void queryClient.invalidateQueries({ queryKey: runsKey(pipelineId ?? "") });
      setPanel("monitor");
      toast.success(`Playing revision ${run.revision}`);
    },
    onError: (err) => {
      if (err instanceof ApiError && err.code === "pipeline_invalid" && Array.isArray(err.details)) {
        showIssues(err.details as unknown as PipelineIssue[]);
      }
      toast.error(errorMessage(err));
    },
  });

  const stop = useMutation({
    mutationFn: () => api<Run>(`/pipelines/${pipelineId}/stop`, { method: "POST" }),
    onSuccess: (run) => {
      queryClient.setQueryData(runKey(run.id ?? ""), run);
      void queryClient.invalidateQueries({ queryKey: runsKey(pipelineId ?? "") });
      toast.success("Stopping");
    },
    onError: (err) => toast.error(errorMessage(err)),
  });

  const pickRevision = async (revision: number) => {
    if (!pipelineId || revision === shownRevision) return;
    if (usePipelineEditor.getState().dirty && !window.confirm("Discard your unsaved changes and show this revision?")) return;
    try {
      const rev = await api<PipelineRevision>(`/pipelines/${pipelineId}/revisions/${revision}`);
      const latest = usePipelineEditor.getState().latestRevision ?? revision;
      usePipelineEditor.getState().load(rev.document as unknown as PipelineDocument, {
        pipelineId,
        latestRevision: latest,
        shownRevision: revision,
        dirty: revision !== latest,
      });
      requestAnimationFrame(() => void fitView({ padding: 0.2, maxZoom: 1 }));
    } catch (err) {
      toast.error(errorMessage(err));
    }
  };

  const reloadLatest = async () => {
    if (!pipelineId) return;
    setConflict(null);
    const fresh = await queryClient.fetchQuery({
      queryKey: pipelineKey(pipelineId),
      queryFn: () => api<PipelineDetail>(`/pipelines/${pipelineId}`),
      staleTime: 0,
    });
    usePipelineEditor.getState().load(fresh.document as unknown as PipelineDocument, { pipelineId, latestRevision: fresh.latest_revision });
    void queryClient.invalidateQueries({ queryKey: revisionsKey(pipelineId) });
    toast.success(`Loaded revision ${fresh.latest_revision}`);
  };

  const focusIssue = (issue: PipelineIssue) => {
    const s = usePipelineEditor.getState();
    let nodeId = issue.node_id ?? null;
    if (!nodeId) {
      const edgeId = Object.entries(s.issueIndex.byEdge).find(([, list]) => list.includes(issue))?.[0];
      nodeId = s.edges.find((e) => e.id === edgeId)?.target ?? null;
    }
    const node = nodeId ? getNode(nodeId) : undefined;
    if (!node) return;
    s.onNodesChange(s.nodes.map((n) => ({ type: "select" as const, id: n.id, selected: n.id === nodeId })));
    void setCenter(node.position.x + (node.measured?.width ?? 220) / 2, node.position.y + (node.measured?.height ?? 80) / 2, { zoom: 1, duration: 300 });
  };

  const addAtCentre = (type: string) => {
    const pane = document.querySelector('[data-testid="pipeline-canvas"]')?.getBoundingClientRect();
    const s = usePipelineEditor.getState();
    const at = pane ? screenToFlowPosition({ x: pane.left + pane.width / 2, y: pane.top + pane.height / 2 }) : { x: 0, y: 0 };
    // cascade down and to the right, a node's height apart, so each new node's ports show
    const step = s.nodes.length % 6;
    s.addNode(type, { x: at.x - 110 + step * 60, y: at.y - 200 + step * 110 });
  };

  if (pipelineId && detail.error) {
    return (
      <div className="space-y-3">
        <ErrorNote error={detail.error} />
        <Link to="/pipelines" className="text-sm text-sky-700 hover:underline">
          Back to pipelines
        </Link>
      </div>
    );
  }
  const ready = (!pipelineId || loadedId === pipelineId) && !!catalog.data;
  const editingNode = editing ? nodes.find((n) => n.id === editing) : undefined;
  const editingManifest = editingNode ? catalog.data?.nodes.find((m) => m.type === editingNode.data.nodeType) : undefined;
  const problemCount = issues?.length ?? 0;

  return (
    <div className="-m-6 flex h-[calc(100%+3rem)] min-h-[32rem] flex-col">
      <div className="flex flex-wrap items-center gap-2 border-b border-slate-200 bg-white px-3 py-2" role="toolbar" aria-label="Pipeline">
        <Link to="/pipelines" className="rounded p-1 text-slate-500 hover:bg-slate-100 hover:text-slate-800" aria-label="Back to pipelines" title="Pipelines">
          <ArrowLeft className="h-5 w-5" aria-hidden />
        </Link>
        <label className="min-w-0">
          <span className="sr-only">Pipeline name</span>
          <input
            value={name}
            onChange={(e) => usePipelineEditor.getState().setName(e.target.value)}
            readOnly={readOnly}
            maxLength={120}
            placeholder="Pipeline name"
            className={clsx(
              "w-64 rounded-md border px-2 py-1 text-base font-semibold",
              readOnly ? "border-transparent bg-transparent" : "border-slate-300 focus:border-sky-500 focus:outline-none",
              !name.trim() && "border-red-400",
            )}
          />
        </label>
        {dirty && (
          <span className="rounded bg-amber-100 px-1.5 py-0.5 text-xs font-medium text-amber-800" data-testid="unsaved">
            Unsaved
          </span>
        )}
        {pipelineId && (
          <label className="flex items-center gap-1 text-xs text-slate-500">
            <span>Revision</span>
            <select
              aria-label="Revision"
              className="rounded-md border border-slate-300 px-1.5 py-1 text-xs"
              value={shownRevision ?? ""}
              onChange={(e) => void pickRevision(Number(e.target.value))}
            >
              {(revisions.data?.items ?? (latestRevision ? [{ revision: latestRevision, created_at: "", created_by: null }] : [])).map((r) => (
                <option key={r.revision} value={r.revision}>
                  {r.revision}
                  {r.revision === latestRevision ? " (latest)" : ""}
                  {r.created_at ? ` · ${dateTime(r.created_at)}` : ""}
                  {r.created_by ? ` · ${r.created_by}` : ""}
                </option>
              ))}
            </select>
          </label>
        )}
        <div className="ml-auto flex flex-wrap items-center gap-2">
          {pipelineId && <RunStatusBadge status={runStatus} />}
          {canEdit && (
            <Button
              variant="ghost"
              onClick={() => usePipelineEditor.getState().removeSelected()}
              disabled={!hasSelection}
              aria-label="Delete selected"
              title="Delete the selected nodes and connections (Delete key)"
            >
              <Trash2 className="h-4 w-4" aria-hidden />
            </Button>
          )}
          <Button variant="secondary" onClick={() => validate.mutate()} busy={validate.isPending} disabled={!ready}>
            <ShieldCheck className="h-4 w-4" aria-hidden /> Validate
          </Button>
          {canEdit && (
            <Button
              variant="secondary"
              onClick={() => save.mutate()}
              busy={save.isPending}
              disabled={!ready || !name.trim() || (!dirty && pipelineId !== null)}
              title={!name.trim() ? "Give the pipeline a name" : undefined}
            >
              <Save className="h-4 w-4" aria-hidden /> Save
            </Button>
          )}
          {canEdit && pipelineId && !running && (
            <Button
              onClick={() => play.mutate()}
              busy={play.isPending}
              disabled={dirty || problemCount > 0}
              title={
                dirty
                  ? "Save your changes first: Play runs the saved revision"
                  : problemCount > 0
                    ? `Fix the ${problemCount} problem${problemCount === 1 ? "" : "s"} first (see Problems)`
                    : `Play revision ${latestRevision}`
              }
            >
              <Play className="h-4 w-4" aria-hidden /> Play
            </Button>
          )}
          {canEdit && pipelineId && running && (
            <Button variant="danger" onClick={() => stop.mutate()} busy={stop.isPending} disabled={runStatus === "stopping"}>
              <Square className="h-4 w-4" aria-hidden /> Stop
            </Button>
          )}
          <span className="mx-1 h-6 w-px bg-slate-200" aria-hidden />
          <Button
            variant={panel === "problems" ? "secondary" : "ghost"}
            onClick={() => setPanel(panel === "problems" ? null : "problems")}
            aria-pressed={panel === "problems"}
          >
            {problemCount ? <CircleAlert className="h-4 w-4 text-red-600" aria-hidden /> : <ListChecks className="h-4 w-4" aria-hidden />}
            Problems{problemCount ? ` (${problemCount})` : ""}
          </Button>
          {pipelineId && (
            <Button
              variant={panel === "monitor" ? "secondary" : "ghost"}
              onClick={() => setPanel(panel === "monitor" ? null : "monitor")}
              aria-pressed={panel === "monitor"}
            >
              <MonitorPlay className="h-4 w-4" aria-hidden /> Monitor
            </Button>
          )}
        </div>
      </div>
      {conflict && (
        <div role="alert" className="flex flex-wrap items-center gap-3 border-b border-amber-200 bg-amber-50 px-4 py-2 text-sm text-amber-900">
          <CircleAlert className="h-4 w-4 shrink-0" aria-hidden />
          <span className="min-w-0 flex-1">Not saved: {conflict}</span>
          <Button variant="secondary" onClick={() => void reloadLatest()}>
            Load the latest (discard my changes)
          </Button>
          <Button variant="ghost" onClick={() => setConflict(null)}>
            Keep editing
          </Button>
        </div>
      )}
      {shownRevision !== null && latestRevision !== null && shownRevision !== latestRevision && (
        <div className="border-b border-sky-200 bg-sky-50 px-4 py-1.5 text-sm text-sky-900">
          Showing revision {shownRevision} of {latestRevision}.{canEdit ? " Save to make it the latest revision." : ""}
        </div>
      )}
      <div className="flex min-h-0 flex-1">
        {canEdit && catalog.data && <Palette nodes={catalog.data.nodes} onAdd={addAtCentre} />}
        <div className="relative min-w-0 flex-1 bg-slate-50">
          {catalog.error ? <ErrorNote error={catalog.error} /> : ready ? <EditorCanvas readOnly={readOnly} onOpenNode={setEditing} /> : <Spinner />}
          {ready && nodes.length === 0 && canEdit && (
            <div className="pointer-events-none absolute inset-0 flex items-center justify-center text-sm text-slate-400">
              Drag nodes from the palette onto the canvas, then connect their ports.
            </div>
          )}
        </div>
        {panel && (
          <aside className="flex w-96 shrink-0 flex-col border-l border-slate-200 bg-white" aria-label={panel === "monitor" ? "Monitor" : "Problems"}>
            <h2 className="border-b border-slate-100 px-4 py-2 text-sm font-semibold text-slate-700">{panel === "monitor" ? "Monitor" : "Problems"}</h2>
            <div className="min-h-0 flex-1 overflow-y-auto p-4">
              {panel === "problems" && <IssuesPanel onShow={focusIssue} />}
              {panel === "monitor" && pipelineId && <MonitorPanel pipelineId={pipelineId} />}
            </div>
          </aside>
        )}
      </div>
      {editingNode && editingManifest && (
        <NodeConfigDialog
          open
          onClose={() => setEditing(null)}
          node={{ id: editingNode.id, type: editingNode.data.nodeType, config: editingNode.data.config }}
          manifest={editingManifest}
          readOnly={readOnly}
          pipelineNodes={nodes.map((n) => ({ id: n.id, type: n.data.nodeType, config: n.data.config }))}
          camera={upstreamCamera(editingNode.id, nodes, usePipelineEditor.getState().edges)}
          errors={nodeConfigIssues(issues ?? [], editingNode.id)}
          onSave={(config) => {
            usePipelineEditor.getState().updateNodeConfig(editingNode.id, config);
            setEditing(null);
          }}
        />
      )}
    </div>
  );
}

export default function PipelineEditorPage() {
  const { pipelineId } = useParams();
  return (
    <ReactFlowProvider key={pipelineId ?? "new"}>
      <Editor pipelineId={pipelineId ?? null} />
    </ReactFlowProvider>
  );
}
