/**
 * Documentation: the user guide (`src/docs/user-guide.md`, Markdown with GitHub tables)
 * with a table of contents. Links to console pages stay in the console; `/docs` (the API's
 * Swagger UI, served by the service itself) and other server paths load outside it.
 */
import { ExternalLink } from "lucide-react";
import { Children, isValidElement, useEffect, useMemo, type ReactNode } from "react";
import Markdown, { type Components } from "react-markdown";
import { Link, useLocation } from "react-router-dom";
import remarkGfm from "remark-gfm";
import { extractToc, slugify } from "../docs/toc";
import guide from "../docs/user-guide.md?raw";

/** The plain text of rendered Markdown children (for heading ids). */
function textOf(children: ReactNode): string {
  return Children.toArray(children)
    .map((child) => {
      if (typeof child === "string" || typeof child === "number") return String(child);
      if (isValidElement<{ children?: ReactNode }>(child)) return textOf(child.props.children);
      return "";
    })
    .join("");
}

/** Server paths that are not console pages: they load outside the single-page app. */
const SERVER_PATHS = /^\/(docs|openapi\.json|api\/|healthz|metrics)/;

const components: Components = {
  h1: ({ children }) => <h1 className="mb-4 text-2xl font-semibold text-slate-900">{children}</h1>,
  h2: ({ children }) => (
    <h2 id={slugify(textOf(children))} className="mt-10 mb-3 scroll-mt-4 border-b border-slate-200 pb-1 text-xl font-semibold text-slate-900">
      {children}
    </h2>
  ),
  h3: ({ children }) => (
    <h3 id={slugify(textOf(children))} className="mt-6 mb-2 scroll-mt-4 text-base font-semibold text-slate-800">
      {children}
    </h3>
  ),
  p: ({ children }) => <p className="my-3 leading-relaxed text-slate-700">{children}</p>,
  ul: ({ children }) => <ul className="my-3 list-disc space-y-1 pl-6 text-slate-700">{children}</ul>,
  ol: ({ children }) => <ol className="my-3 list-decimal space-y-1 pl-6 text-slate-700">{children}</ol>,
  li: ({ children }) => <li className="leading-relaxed">{children}</li>,
  blockquote: ({ children }) => (
    <blockquote className="my-4 rounded-r-md border-l-4 border-sky-400 bg-sky-50 px-4 py-1 text-slate-700">{children}</blockquote>
  ),
  table: ({ children }) => (
    <div className="my-4 overflow-x-auto rounded-md border border-slate-200">
      <table className="w-full border-collapse text-left text-sm">{children}</table>
    </div>
  ),
  thead: ({ children }) => <thead className="bg-slate-50 text-slate-600">{children}</thead>,
  th: ({ children }) => <th className="border-b border-slate-200 px-3 py-2 font-semibold">{children}</th>,
  td: ({ children }) => <td className="border-b border-slate-100 px-3 py-2 align-top text-slate-700">{children}</td>,
  pre: ({ children }) => <pre className="my-4 overflow-x-auto rounded-md bg-slate-900 p-3 text-sm text-slate-100 [&_code]:bg-transparent [&_code]:p-0 [&_code]:text-inherit">{children}</pre>,
  code: ({ children }) => <code className="rounded bg-slate-100 px-1 py-0.5 font-mono text-[0.85em] text-slate-800">{children}</code>,
  strong: ({ children }) => <strong className="font-semibold text-slate-900">{children}</strong>,
  a: ({ href, children }) => {
    const cls = "font-medium text-sky-700 hover:underline";
    if (href && href.startsWith("/") && !SERVER_PATHS.test(href)) {
      return (
        <Link to={href} className={cls}>
          {children}
        </Link>
      );
    }
    if (href && href.startsWith("#")) {
      return (
        <a href={href} className={cls}>
          {children}
        </a>
      );
    }
    return (
      <a href={href} className={`${cls} inline-flex items-center gap-0.5`} target="_blank" rel="noopener noreferrer">
        {children}
        <ExternalLink className="h-3 w-3" aria-hidden />
      </a>
    );
  },
};

export default function DocumentationPage() {
  const toc = useMemo(() => extractToc(guide), []);
  const { hash } = useLocation();
  useEffect(() => {
    if (!hash) return;
    document.getElementById(decodeURIComponent(hash.slice(1)))?.scrollIntoView();
  }, [hash]);

  return (
    <div className="flex max-w-6xl gap-8">
      <article className="min-w-0 flex-1 rounded-lg border border-slate-200 bg-white px-8 py-6 shadow-sm" aria-label="User guide">
        <Markdown remarkPlugins={[remarkGfm]} components={components}>
          {guide}
        </Markdown>
      </article>
      <nav aria-label="Contents" className="sticky top-0 hidden w-60 shrink-0 self-start text-sm lg:block">
        <h2 className="mb-2 text-xs font-semibold uppercase tracking-wide text-slate-500">Contents</h2>
        <ul className="space-y-1">
          {toc.map((entry) => (
            <li key={entry.id} className={entry.level === 3 ? "pl-3" : ""}>
              <a
                href={`#${entry.id}`}
                className={entry.level === 2 ? "font-medium text-slate-700 hover:text-sky-700" : "text-slate-500 hover:text-sky-700"}
              >
                {entry.text}
              </a>
            </li>
          ))}
        </ul>
        <a
          href="/docs"
          target="_blank"
          rel="noopener noreferrer"
          className="mt-4 inline-flex items-center gap-1 rounded-md border border-slate-300 bg-white px-3 py-1.5 font-medium text-slate-700 hover:bg-slate-50"
        >
          API reference
          <ExternalLink className="h-3.5 w-3.5" aria-hidden />
        </a>
      </nav>
    </div>
  );
}
