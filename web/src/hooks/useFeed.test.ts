import { feedUrl, reconnectDelay } from "./useFeed";

describe("live feed", () => {
  it("backs off from about a second to at most 30 s, with jitter in the upper half", () => {
    expect(reconnectDelay(0, () => 0)).toBe(500);
    expect(reconnectDelay(0, () => 1)).toBe(1000);
    expect(reconnectDelay(3, () => 0.5)).toBe(6000);
    expect(reconnectDelay(20, () => 1)).toBe(30_000);
    expect(reconnectDelay(20, () => 0)).toBe(15_000);
  });

  it("speaks wss on https pages and ws on http, to the same host", () => {
    expect(feedUrl("/ws/devices", { protocol: "https:", host: "aios.example.com" })).toBe("wss://aios.example.com/ws/devices");
    expect(feedUrl("/ws/devices", { protocol: "http:", host: "127.0.0.1:8080" })).toBe("ws://127.0.0.1:8080/ws/devices");
  });
});
