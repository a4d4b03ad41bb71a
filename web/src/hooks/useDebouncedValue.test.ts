import { act, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useDebouncedValue } from "./useDebouncedValue";

describe("useDebouncedValue", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("gives the first value at once", () => {
    const { result } = renderHook(() => useDebouncedValue("plc", 300));
    expect(result.current).toBe("plc");
  });

  it("gives a new value only after it stopped changing for the delay", () => {
    const { result, rerender } = renderHook(({ v }) => useDebouncedValue(v, 300), { initialProps: { v: "" } });
    rerender({ v: "s" });
    act(() => void vi.advanceTimersByTime(200));
    rerender({ v: "si" });
    act(() => void vi.advanceTimersByTime(200));
    rerender({ v: "sim" });
    act(() => void vi.advanceTimersByTime(299));
    expect(result.current).toBe(""); // still typing: nothing yet
    act(() => void vi.advanceTimersByTime(1));
    expect(result.current).toBe("sim"); // the last value only, never "s" or "si"
  });

  it("forgets a pending value when the component goes away", () => {
    const { result, unmount } = renderHook(({ v }) => useDebouncedValue(v, 300), { initialProps: { v: "a" } });
    unmount();
    act(() => void vi.advanceTimersByTime(1000));
    expect(result.current).toBe("a");
    expect(vi.getTimerCount()).toBe(0);
  });
});
