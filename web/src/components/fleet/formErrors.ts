/**
 * The API's field errors (`details[].field` such as `body.location.lat`) as the names of a
 * form's fields, so each message shows under the input it is about.
 */
import { ApiError } from "../../api/client";

/**
 * `{"body.location.lat": "…"}` → `{"lat": "…"}` with `aliases` mapping API paths (without
 * `body.`) to form fields; paths not in `aliases` keep their first segment. Messages about
 * the same field are joined.
 */
export function formFieldErrors(error: unknown, aliases: Record<string, string> = {}): Record<string, string> {
  if (!(error instanceof ApiError)) return {};
  const out: Record<string, string> = {};
  for (const [field, message] of Object.entries(error.fieldErrors())) {
    const path = field.replace(/^body\./, "");
    const name = aliases[path] ?? aliases[path.split(".")[0]] ?? path.split(".")[0];
    out[name] = out[name] ? `${out[name]}; ${message}` : message;
  }
  return out;
}
