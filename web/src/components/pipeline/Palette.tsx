/**
 * The palette: node types of the catalog by category, with icon, title and description
 * (tooltip), and a search box. Drag an item onto the canvas (HTML5 drag and drop: the type id
 * travels as `application/x-aios-node`), or press Enter / the + button to add it in the
 * middle of the view.
 */
import { Plus, Search } from "lucide-react";
import { useMemo, useState, type DragEvent } from "react";
import { groupByCategory, type NodeManifest } from "./catalog";
import { categoryStyle, NodeIcon } from "./icons";

export const DRAG_MIME = "application/x-aios-node";

export function Palette({ nodes, onAdd }: { nodes: NodeManifest[]; onAdd: (type: string) => void }) {
  const [search, setSearch] = useState("");
  const groups = useMemo(() => groupByCategory(nodes, search), [nodes, search]);

  const onDragStart = (event: DragEvent, type: string) => {
    event.dataTransfer.setData(DRAG_MIME, type);
    event.dataTransfer.setData("text/plain", type);
    event.dataTransfer.effectAllowed = "copy";
  };

  return (
    <aside aria-label="Node palette" className="flex w-60 shrink-0 flex-col border-r border-slate-200 bg-white">
      <div className="border-b border-slate-100 p-2">
        <label className="relative block">
          <span className="sr-only">Search nodes</span>
          <Search className="pointer-events-none absolute top-2 left-2 h-4 w-4 text-slate-400" aria-hidden />
          <input
            type="search"
            placeholder="Search nodes"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
            className="block w-full rounded-md border border-slate-300 py-1.5 pr-2 pl-8 text-sm focus:border-sky-500 focus:outline-none focus:ring-1 focus:ring-sky-500"
          />
        </label>
      </div>
      <div className="min-h-0 flex-1 overflow-y-auto p-2">
        {groups.length === 0 && <p className="p-2 text-sm text-slate-500">No node matches “{search}”.</p>}
        {groups.map((group) => (
          <section key={group.id} className="mb-3" aria-label={group.title}>
            <h3 className="px-1 pb-1 text-xs font-semibold tracking-wide text-slate-500 uppercase">{group.title}</h3>
            <ul className="space-y-1">
              {group.nodes.map((m) => (
                <li key={m.type}>
                  <div
                    role="button"
                    tabIndex={0}
                    draggable
                    data-testid={`palette-${m.type}`}
                    aria-label={`${m.title}: ${m.description}`}
                    title={`${m.title} (${m.type})\n${m.description}`}
                    onDragStart={(e) => onDragStart(e, m.type)}
                    onKeyDown={(e) => {
                      if (e.key === "Enter" || e.key === " ") {
                        e.preventDefault();
                        onAdd(m.type);
                      }
                    }}
                    className="group flex cursor-grab items-start gap-2 rounded-md border border-slate-200 bg-white px-2 py-1.5 text-sm hover:border-sky-300 hover:bg-sky-50 focus:ring-2 focus:ring-sky-400 focus:outline-none active:cursor-grabbing"
                  >
                    <NodeIcon name={m.icon} className={`mt-0.5 h-4 w-4 shrink-0 ${categoryStyle(m.category).icon}`} />
                    <span className="min-w-0 flex-1">
                      <span className="block font-medium text-slate-800">{m.title}</span>
                      <span className="line-clamp-2 block text-xs text-slate-500">{m.description}</span>
                    </span>
                    <button
                      type="button"
                      tabIndex={-1}
                      aria-label={`Add ${m.title}`}
                      title={`Add ${m.title}`}
                      onClick={() => onAdd(m.type)}
                      className="invisible rounded p-0.5 text-slate-500 group-hover:visible hover:bg-sky-100 hover:text-sky-700"
                    >
                      <Plus className="h-4 w-4" aria-hidden />
                    </button>
                  </div>
                </li>
              ))}
            </ul>
          </section>
        ))}
      </div>
    </aside>
  );
}
