import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { DeviceMap } from "./DeviceMap";
import { worldOutline } from "./world";

describe("DeviceMap", () => {
  it("bundles a world outline of the countries", () => {
    const outline = worldOutline();
    expect(outline.type).toBe("FeatureCollection");
    expect(outline.features.length).toBeGreaterThan(150);
    expect(outline.features.some((f) => f.properties?.name === "Portugal")).toBe(true);
  });

  it("draws one marker per located device and a legend", () => {
    const { container } = render(
      <DeviceMap
        devices={[
          { id: "cam", name: "Camera", status: "online", location: { lat: 38.7, lon: -9.1 } },
          { id: "plc", name: "PLC", status: "warning", location: { lat: 41.1, lon: -8.6 } },
          { id: "gw", name: "Gateway", status: "offline" },
        ]}
      />,
    );
    expect(screen.getByRole("region", { name: "Device map" })).toBeInTheDocument();
    expect(container.querySelectorAll("path.device-marker")).toHaveLength(2);
    expect(container.querySelectorAll("path.device-marker-warning")).toHaveLength(1);
    const legend = screen.getByRole("list", { name: "Map legend" });
    expect(legend).toHaveTextContent("online 1");
    expect(legend).toHaveTextContent("1 without location");
  }, 30_000); // Leaflet and the outline's conversion are slow on a busy machine
});
