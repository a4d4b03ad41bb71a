/**
 * Register a device (`POST /devices`): id, name, kind, site, tags, parent connector and
 * location. The API's field errors (422) and a taken id (409) show under their fields.
 */
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useForm } from "react-hook-form";
import toast from "react-hot-toast";
import { api, ApiError, errorMessage } from "../../api/client";
import { Button, Field, inputClass, Modal } from "../ui";
import { formFieldErrors } from "./formErrors";
import { KIND_LABELS } from "./KindIcon";
import { DEVICE_KINDS, type Device, type DeviceCreate, type DeviceKind } from "./types";

export interface RegisterForm {
  id: string;
  name: string;
  kind: DeviceKind;
  site: string;
  tags: string;
  parent_id: string;
  lat: string;
  lon: string;
}

const EMPTY: RegisterForm = { id: "", name: "", kind: "camera", site: "", tags: "", parent_id: "", lat: "", lon: "" };

/** The request body of the form: empty optional fields left out, tags split on commas. */
export function registerBody(form: RegisterForm): DeviceCreate {
  const body: DeviceCreate = { id: form.id.trim(), name: form.name.trim(), kind: form.kind };
  if (form.site.trim()) body.site = form.site.trim();
  const tags = form.tags
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  if (tags.length) body.tags = tags;
  if (form.parent_id.trim()) body.parent_id = form.parent_id.trim();
  // the form checks that both or neither are given
  if (form.lat.trim() !== "" && form.lon.trim() !== "") {
    body.location = { lat: Number(form.lat), lon: Number(form.lon) };
  }
  return body;
}

const FIELD_ALIASES: Record<string, string> = { "location.lat": "lat", "location.lon": "lon", location: "lat" };

export function RegisterDeviceModal({
  open,
  onClose,
  connectors,
  onCreated,
}: {
  open: boolean;
  onClose: () => void;
  /** Connectors to offer as the parent. */
  connectors: Pick<Device, "id" | "name">[];
  onCreated?: (device: Device) => void;
}) {
  const queryClient = useQueryClient();
  const {
    register,
    handleSubmit,
    setError,
    reset,
    formState: { errors },
  } = useForm<RegisterForm>({ defaultValues: EMPTY });

  const create = useMutation({
    mutationFn: (form: RegisterForm) => api<Device>("/devices", { method: "POST", body: registerBody(form) }),
    onSuccess: (device) => {
      toast.success(`Registered ${device.name}`);
      void queryClient.invalidateQueries({ queryKey: ["devices"] });
      void queryClient.invalidateQueries({ queryKey: ["analytics", "devices"] });
      reset(EMPTY);
      onClose();
      onCreated?.(device);
    },
    onError: (err) => {
      const fields = formFieldErrors(err, FIELD_ALIASES);
      if (err instanceof ApiError && err.status === 409) fields.id = err.message;
      const known = Object.entries(fields).filter(([name]) => name in EMPTY);
      for (const [name, message] of known) setError(name as keyof RegisterForm, { type: "server", message });
      if (known.length === 0) toast.error(errorMessage(err));
    },
  });

  const close = () => {
    reset(EMPTY);
    create.reset();
    onClose();
  };

  const numberRule = (min: number, max: number, label: string) => ({
    validate: (value: string, form: RegisterForm) => {
      const other = label === "Latitude" ? form.lon : form.lat;
      if (value.trim() === "") return other.trim() === "" || `give the ${label.toLowerCase()} too`;
      const n = Number(value);
      return (Number.isFinite(n) && n >= min && n <= max) || `${label} is between ${min} and ${max}`;
    },
  });

  return (
    <Modal
      title="Register device"
      open={open}
      onClose={close}
      footer={
        <>
          <Button variant="secondary" onClick={close}>
            Cancel
          </Button>
          <Button type="submit" form="register-device" busy={create.isPending}>
            Register
          </Button>
        </>
      }
    >
      <form id="register-device" className="grid grid-cols-2 gap-3" onSubmit={handleSubmit((form) => create.mutate(form))} noValidate>
        <Field label="Device id" error={errors.id?.message} hint="Letters, digits and _ . : - ; it cannot change later.">
          <input className={inputClass} autoFocus {...register("id", {
              required: "the id is required",
              pattern: {
                // the API's device id pattern (aios.domain.DEVICE_ID_PATTERN)
                value: /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/,
                message: "use 1–128 letters, digits and _ . : - (starting with a letter or digit)",
              },
            })} />
        </Field>
        <Field label="Name" error={errors.name?.message}>
          <input className={inputClass} {...register("name", { required: "the name is required" })} />
        </Field>
        <Field label="Kind" error={errors.kind?.message}>
          <select className={inputClass} {...register("kind")}>
            {DEVICE_KINDS.map((k) => (
              <option key={k} value={k}>
                {KIND_LABELS[k]}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Site" error={errors.site?.message}>
          <input className={inputClass} {...register("site")} />
        </Field>
        <Field label="Tags" error={errors.tags?.message} hint="Comma separated">
          <input className={inputClass} {...register("tags")} />
        </Field>
        <Field label="Parent connector" error={errors.parent_id?.message}>
          <select className={inputClass} {...register("parent_id")}>
            <option value="">None</option>
            {connectors.map((c) => (
              <option key={c.id} value={c.id}>
                {c.name} ({c.id})
              </option>
            ))}
          </select>
        </Field>
        <Field label="Latitude" error={errors.lat?.message} hint="Degrees, WGS 84">
          <input className={inputClass} inputMode="decimal" {...register("lat", numberRule(-90, 90, "Latitude"))} />
        </Field>
        <Field label="Longitude" error={errors.lon?.message} hint="Degrees, WGS 84">
          <input className={inputClass} inputMode="decimal" {...register("lon", numberRule(-180, 180, "Longitude"))} />
        </Field>
      </form>
    </Modal>
  );
}
