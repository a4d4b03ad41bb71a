import { describe, expect, it } from "vitest";
import { CommandFormError, commandSummary, plcCommandParams, registerOptions, registersFor, type PlcCommandForm } from "./commands";

const base: PlcCommandForm = { command: "write_coil", target: "register", register: "siren", table: "", address: "", dataType: "", value: "on" };

describe("PLC commands", () => {
  it("knows register names from the configuration, then from telemetry", () => {
    const options = registerOptions(
      {
        desired_config: { registers: [{ name: "siren", table: "coil", address: 0, writable: true }, { name: "tank_level", address: 40001, unit: "%", writable: true }] },
        reported_config: { plc: { registers: [{ name: "alarm", address: 10001 }, { name: "siren", table: "coil" }] } },
      },
      ["tank_level", "batch_count"],
    );
    expect(options).toEqual([
      { name: "siren", table: "coil", writable: true, unit: null },
      { name: "tank_level", table: "holding_register", writable: true, unit: "%" },
      { name: "alarm", table: "discrete_input", writable: null, unit: null },
      { name: "batch_count", table: null, writable: null, unit: null },
    ]);
    expect(registersFor("write_coil", options).map((o) => o.name)).toEqual(["siren", "batch_count"]);
    expect(registersFor("read_coil", options).map((o) => o.name)).toEqual(["siren", "alarm", "batch_count"]);
    expect(registersFor("write_register", options).map((o) => o.name)).toEqual(["tank_level", "batch_count"]);
  });

  it("builds params by register name or by address", () => {
    expect(plcCommandParams(base)).toEqual({ register: "siren", value: true });
    expect(plcCommandParams({ ...base, value: "off" })).toEqual({ register: "siren", value: false });
    expect(plcCommandParams({ ...base, command: "read_coil", value: "on" })).toEqual({ register: "siren" });
    expect(plcCommandParams({ ...base, command: "write_register", target: "address", address: "40001", table: "holding_register", dataType: "float32", value: "12.5" })).toEqual({
      address: 40001,
      table: "holding_register",
      data_type: "float32",
      value: 12.5,
    });
  });

  it("names the field to fix", () => {
    const fieldOf = (form: PlcCommandForm) => {
      try {
        plcCommandParams(form);
        return null;
      } catch (err) {
        return err instanceof CommandFormError ? err.field : "other";
      }
    };
    expect(fieldOf({ ...base, register: " " })).toBe("register");
    expect(fieldOf({ ...base, value: "maybe" })).toBe("value");
    expect(fieldOf({ ...base, command: "write_register", value: "" })).toBe("value");
    expect(fieldOf({ ...base, target: "address", address: "4x1" })).toBe("address");
  });

  it("sums up an outcome", () => {
    expect(commandSummary({ status: "pending" })).toBe("waiting for the device…");
    expect(commandSummary({ status: "succeeded", response: { value: 1, register: "siren", unit: null } })).toBe("siren = 1");
    expect(commandSummary({ status: "succeeded", response: { value: 12.5, register: "tank_level", unit: "%" } })).toBe("tank_level = 12.5 %");
    expect(commandSummary({ status: "failed", error: "PLC answered exception 02" })).toBe("PLC answered exception 02");
    expect(commandSummary({ status: "timed_out", response: null })).toBe("timed_out");
  });
});
