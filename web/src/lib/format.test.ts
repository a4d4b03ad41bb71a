import { count, duration, percent, timeAgo } from "./format";

describe("format", () => {
  it("durations read like a person writes them", () => {
    expect(duration(12)).toBe("12 s");
    expect(duration(250)).toBe("4 min 10 s");
    expect(duration(7500)).toBe("2 h 05 min");
    expect(duration(3 * 86400 + 4 * 3600)).toBe("3 d 4 h");
    expect(duration(null)).toBe("—");
  });
  it("percent and count", () => {
    expect(percent(0.975)).toBe("97.5 %");
    expect(percent(undefined)).toBe("—");
    expect(count(1234567)).toBe("1,234,567");
  });
  it("time ago", () => {
    expect(timeAgo(null)).toBe("never");
    expect(timeAgo(new Date())).toBe("just now");
    expect(timeAgo(new Date(Date.now() - 180_000))).toBe("3 minutes ago");
  });
});
