/**
 * Commands a console sends to a device. A PLC behind a connector takes `write_coil`,
 * `write_register`, `read_coil`, `read_register`, with either a register name of its
 * register map (`{"register": "siren", "value": true}`) or an address
 * (`{"table": "coil", "address": 0, "value": true}`).
 */
import type { Device } from "./types";

export const PLC_COMMANDS = ["write_coil", "write_register", "read_coil", "read_register"] as const;
export type PlcCommand = (typeof PLC_COMMANDS)[number];

export interface RegisterOption {
  name: string;
  /** "coil", "discrete_input", "holding_register", "input_register"; null when unknown. */
  table: string | null;
  writable: boolean | null;
  unit: string | null;
}

function registersOf(config: unknown): unknown[] {
  if (!config || typeof config !== "object") return [];
  const c = config as Record<string, unknown>;
  if (Array.isArray(c.registers)) return c.registers;
  for (const key of ["plc", "modbus"]) {
    const inner = c[key];
    if (inner && typeof inner === "object" && Array.isArray((inner as Record<string, unknown>).registers)) {
      return (inner as Record<string, unknown>).registers as unknown[];
    }
  }
  return [];
}

/** A coil (`table: coil`, or a Modicon reference 0xxxx/1xxxx) or a register? */
function tableOf(reg: Record<string, unknown>): string | null {
  if (typeof reg.table === "string") return reg.table;
  if (typeof reg.address === "number" || typeof reg.address === "string") {
    const n = Number(reg.address);
    if (n >= 40001) return "holding_register";
    if (n >= 30001) return "input_register";
    if (n >= 10001) return "discrete_input";
  }
  if (reg.data_type === "bool") return "coil";
  return null;
}

/**
 * The register names the device is known to have: its configuration's register map
 * (`registers`, `plc.registers` or `modbus.registers`, desired first, then reported), then
 * the metric names it reports telemetry under (table unknown).
 */
export function registerOptions(device: Pick<Device, "desired_config" | "reported_config">, metrics: string[] = []): RegisterOption[] {
  const out = new Map<string, RegisterOption>();
  for (const config of [device.desired_config, device.reported_config]) {
    for (const item of registersOf(config)) {
      if (!item || typeof item !== "object") continue;
      const reg = item as Record<string, unknown>;
      if (typeof reg.name !== "string" || out.has(reg.name)) continue;
      out.set(reg.name, {
        name: reg.name,
        table: tableOf(reg),
        writable: typeof reg.writable === "boolean" ? reg.writable : null,
        unit: typeof reg.unit === "string" ? reg.unit : null,
      });
    }
  }
  for (const metric of metrics) {
    if (!out.has(metric)) out.set(metric, { name: metric, table: null, writable: null, unit: null });
  }
  return Array.from(out.values());
}

/** Registers that fit a command: coils for coil commands, registers otherwise; unknown tables fit both. */
export function registersFor(command: PlcCommand, options: RegisterOption[]): RegisterOption[] {
  const coil = command.endsWith("_coil");
  const writing = command.startsWith("write_");
  return options.filter((o) => {
    if (writing && o.writable === false) return false;
    if (o.table === null) return true;
    return coil ? o.table === "coil" || (!writing && o.table === "discrete_input") : o.table.endsWith("register");
  });
}

export interface PlcCommandForm {
  command: PlcCommand;
  target: "register" | "address";
  register: string;
  table: string;
  address: string;
  dataType: string;
  value: string;
}

export class CommandFormError extends Error {
  constructor(
    readonly field: keyof PlcCommandForm,
    message: string,
  ) {
    super(message);
  }
}

/** `"true" | "on" | "1"` → true, `"false" | "off" | "0"` → false. */
export function parseCoilValue(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (["true", "on", "1"].includes(t)) return true;
  if (["false", "off", "0"].includes(t)) return false;
  throw new CommandFormError("value", "a coil takes on or off");
}

/** The `params` of a PLC command form; throws {@link CommandFormError} naming the field to fix. */
export function plcCommandParams(form: PlcCommandForm): Record<string, unknown> {
  const writing = form.command.startsWith("write_");
  const params: Record<string, unknown> = {};
  if (form.target === "register") {
    if (!form.register.trim()) throw new CommandFormError("register", "choose a register");
    params.register = form.register.trim();
  } else {
    const address = form.address.trim();
    if (!/^\d+$/.test(address)) throw new CommandFormError("address", "an address is a whole number (0-based, or a reference such as 40001)");
    params.address = Number(address);
    if (form.table) params.table = form.table;
    if (form.dataType && !form.command.endsWith("_coil")) params.data_type = form.dataType;
  }
  if (writing) {
    if (form.command === "write_coil") params.value = parseCoilValue(form.value);
    else {
      const value = Number(form.value.trim());
      if (form.value.trim() === "" || !Number.isFinite(value)) throw new CommandFormError("value", "a register takes a number");
      params.value = value;
    }
  }
  return params;
}

/** A command's outcome in one line: the value read back, or the error. */
export function commandSummary(command: { status?: string; response?: Record<string, unknown> | null; error?: string | null }): string {
  if (command.status === "pending" || !command.status) return "waiting for the device…";
  if (command.error) return command.error;
  const response = command.response ?? {};
  if ("value" in response) {
    const unit = typeof response.unit === "string" && response.unit ? ` ${response.unit}` : "";
    const what = typeof response.register === "string" ? response.register : response.address !== undefined ? `address ${String(response.address)}` : "value";
    return `${what} = ${JSON.stringify(response.value)}${unit}`;
  }
  return Object.keys(response).length ? JSON.stringify(response) : command.status;
}
