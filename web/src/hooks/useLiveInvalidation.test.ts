import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { keyedThrottle } from "./useLiveInvalidation";

describe("keyedThrottle", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("runs a key at once, then at most once per interval, merging requests in between", () => {
    const run = vi.fn();
    const t = keyedThrottle(run, 1000, () => Date.now());
    t.request(["events"]);
    expect(run).toHaveBeenCalledTimes(1);
    t.request(["events"]);
    t.request(["events"]);
    expect(run).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(999);
    expect(run).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(run).toHaveBeenCalledTimes(2);
    vi.advanceTimersByTime(5000);
    expect(run).toHaveBeenCalledTimes(2);
  });

  it("keeps keys apart", () => {
    const run = vi.fn();
    const t = keyedThrottle(run, 1000, () => Date.now());
    t.request(["events"]);
    t.request(["alerts"]);
    t.request(["events"]);
    expect(run.mock.calls.map((c) => c[0])).toEqual([["events"], ["alerts"]]);
  });

  it("drops what is scheduled on cancel", () => {
    const run = vi.fn();
    const t = keyedThrottle(run, 1000, () => Date.now());
    t.request(["events"]);
    t.request(["events"]);
    t.cancel();
    vi.advanceTimersByTime(2000);
    expect(run).toHaveBeenCalledTimes(1);
  });
});
