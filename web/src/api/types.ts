/** Names for the API's records, from the generated OpenAPI types (`npm run gen:api`). */
import type { components } from "./schema";

type S = components["schemas"];

export type Role = S["Role"];
export type User = S["UserOut"];
export type TokenResponse = S["TokenResponse"];
export type Device = S["DeviceView"];
export type DeviceKind = S["DeviceKind"];
export type Run = S["Run"];
export type RunStatus = S["RunStatus"];
export type Alert = S["Alert"];
export type AlertRule = S["AlertRule"];

/** One page of a list endpoint: `next_cursor` is passed back as `cursor` for the next page. */
export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

/** The API's one error shape (`{"error": {...}}`). */
export interface ApiErrorBody {
  code: string;
  message: string;
  details?: { field?: string; message?: string; [key: string]: unknown }[] | null;
  request_id?: string | null;
}

export type EventRecord = S["EventRecord"];
export type EventAnalytics = S["EventAnalytics"];
export type DeviceAnalytics = S["DeviceAnalytics"];
export type PerformanceOut = S["PerformanceOut"];
export type PipelineSummary = S["PipelineOut"];
export type SystemOut = S["SystemOut"];
export type AvailabilityOut = S["AvailabilityOut"];
export type AvailabilityHour = S["AvailabilityHour"];
