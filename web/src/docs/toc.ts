/**
 * The user guide's table of contents: the Markdown headings (levels 2 and 3) with the
 * anchor ids their rendered headings get, so a link `#fleet-management` scrolls to them.
 */

export interface TocEntry {
  level: 2 | 3;
  text: string;
  id: string;
}

/** `Validate, save, play and stop` → `validate-save-play-and-stop`. */
export function slugify(text: string): string {
  return text
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9\s-]/g, "")
    .trim()
    .replace(/[\s-]+/g, "-");
}

/** A heading's text as it is read: inline code, emphasis and links reduced to their words. */
export function headingText(markdown: string): string {
  return markdown
    .replace(/`([^`]*)`/g, "$1")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/[*_]{1,2}([^*_]+)[*_]{1,2}/g, "$1")
    .trim();
}

/** The level 2 and 3 headings of `markdown`, outside fenced code blocks. */
export function extractToc(markdown: string): TocEntry[] {
  const out: TocEntry[] = [];
  let fenced = false;
  for (const line of markdown.split(/\r?\n/)) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      continue;
    }
    if (fenced) continue;
    const match = /^(#{2,3})\s+(.+?)\s*#*\s*$/.exec(line);
    if (!match) continue;
    const text = headingText(match[2]);
    out.push({ level: match[1].length as 2 | 3, text, id: slugify(text) });
  }
  return out;
}
