/** Names of the API records the fleet pages use (from the generated OpenAPI types). */
import type { components } from "../../api/schema";

type S = components["schemas"];

export type Device = S["DeviceView"];
export type DeviceKind = S["DeviceKind"];
export type DeviceStatusName = S["DeviceStatus"];
export type DeviceCreate = S["DeviceCreate"];
export type DeviceAnalytics = S["DeviceAnalytics"];
export type DeviceEvent = S["DeviceEvent"];
export type TelemetryPoint = S["TelemetryPoint"];
export type Command = S["Command"];
export type CommandIn = S["CommandIn"];
export type AlertRule = S["AlertRule"];
export type AlertRuleIn = S["AlertRuleIn"];

export const DEVICE_KINDS: DeviceKind[] = ["connector", "camera", "plc", "sensor"];
export const DEVICE_STATUSES: DeviceStatusName[] = ["online", "warning", "offline"];
