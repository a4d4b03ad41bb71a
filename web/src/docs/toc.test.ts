import guide from "./user-guide.md?raw";
import { extractToc, headingText, slugify } from "./toc";

describe("table of contents", () => {
  it("slugs headings as the page's anchors", () => {
    expect(slugify("Validate, save, play and stop")).toBe("validate-save-play-and-stop");
    expect(slugify("Users and roles")).toBe("users-and-roles");
    expect(slugify("Alerts  and   acknowledgement")).toBe("alerts-and-acknowledgement");
    expect(slugify("Câmeras — ao vivo")).toBe("cameras-ao-vivo");
  });

  it("reads headings as text", () => {
    expect(headingText("The `connector` and [links](/x) **bold**")).toBe("The connector and links bold");
  });

  it("lists level 2 and 3 headings outside code blocks", () => {
    const md = ["# Title", "## One", "text", "```", "## not a heading", "```", "### Two `a`", "#### Deep"].join("\n");
    expect(extractToc(md)).toEqual([
      { level: 2, text: "One", id: "one" },
      { level: 3, text: "Two a", id: "two-a" },
    ]);
  });

  it("covers every part of the user guide, each heading with its own anchor", () => {
    const toc = extractToc(guide);
    const top = toc.filter((e) => e.level === 2).map((e) => e.text);
    expect(top).toEqual([
      "Getting started",
      "Dashboard",
      "Fleet Management",
      "Pipeline builder",
      "Live view",
      "Alerts and acknowledgement",
      "Settings",
      "Profile",
      "The connector",
      "Troubleshooting",
    ]);
    const ids = toc.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
