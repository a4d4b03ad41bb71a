import { describe, expect, it } from "vitest";
import { listQuery, readFilters, writeFilters } from "./params";

describe("fleet filters in the URL", () => {
  it("reads known values and ignores unknown statuses and kinds", () => {
    const f = readFilters(new URLSearchParams("q=sim&status=online&site=north&kind=plc&cursor=abc"));
    expect(f).toEqual({ q: "sim", status: "online", site: "north", kind: "plc", cursor: "abc" });
    expect(readFilters(new URLSearchParams("status=broken&kind=toaster"))).toMatchObject({ status: "", kind: "" });
  });

  it("drops the page cursor when a filter changes, keeps it when only the page changes", () => {
    const current = new URLSearchParams("q=sim&cursor=abc");
    expect(writeFilters(current, { status: "warning" }).toString()).toBe("q=sim&status=warning");
    expect(writeFilters(current, { q: "sim" }).get("cursor")).toBe("abc"); // same value: same list
    expect(writeFilters(current, { cursor: "def" }).toString()).toBe("q=sim&cursor=def");
    expect(writeFilters(current, { q: "" }).toString()).toBe("");
  });

  it("asks the API with its parameter names, without empty values", () => {
    const q = listQuery(readFilters(new URLSearchParams("q=%20plc%20&status=offline")), 25);
    expect(q).toEqual({ search: "plc", status: "offline", site: undefined, kind: undefined, cursor: undefined, limit: 25 });
  });
});
