import { act, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useNow } from "./useNow";

describe("useNow", () => {
  beforeEach(() => vi.useFakeTimers({ now: new Date("2026-11-30T10:00:00Z") }));
  afterEach(() => vi.useRealTimers());

  it("moves on every interval", () => {
    const { result } = renderHook(() => useNow(1000));
    expect(result.current.toISOString()).toBe("2026-11-30T10:00:00.000Z");
    act(() => void vi.advanceTimersByTime(3000));
    expect(result.current.toISOString()).toBe("2026-11-30T10:00:03.000Z");
  });
});
