/**
 * Where the device is: on the offline map with the devices it connects (if they have a
 * location); operators set or change the position (`PUT /devices/{id}` with the version read).
 */
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useNavigate } from "react-router-dom";
import { useForm } from "react-hook-form";
import toast from "react-hot-toast";
import { api, ApiError, errorMessage } from "../../../api/client";
import { DeviceMap } from "../../map/DeviceMap";
import { Button, Card, EmptyState, Field, inputClass } from "../../ui";
import { formFieldErrors } from "../formErrors";
import type { Device } from "../types";

export function LocationPanel({ device, connected, canOperate }: { device: Device; connected: Device[]; canOperate: boolean }) {
  const navigate = useNavigate();
  const located = [device, ...connected].filter((d) => d.location);
  return (
    <div className="space-y-4">
      <Card title="Location">
        {device.location ? (
          <p className="mb-2 text-sm text-slate-600" data-testid="device-location">
            {device.location.lat.toFixed(5)}, {device.location.lon.toFixed(5)}
          </p>
        ) : (
          <EmptyState>No location set for this device.</EmptyState>
        )}
        {located.length > 0 && (
          <DeviceMap
            devices={located.map((d) => ({ id: d.id, name: d.name, status: d.status, location: d.location ?? undefined }))}
            height={360}
            focusId={device.location ? device.id : undefined}
            onSelect={(id) => id !== device.id && navigate(`/fleet/${encodeURIComponent(id)}`)}
          />
        )}
      </Card>
      {canOperate && <LocationForm device={device} />}
    </div>
  );
}

function LocationForm({ device }: { device: Device }) {
  const queryClient = useQueryClient();
  const {
    register,
    handleSubmit,
    setError,
    formState: { errors },
  } = useForm<{ lat: string; lon: string }>({
    values: { lat: device.location ? String(device.location.lat) : "", lon: device.location ? String(device.location.lon) : "" },
  });
  const save = useMutation({
    mutationFn: (location: { lat: number; lon: number } | null) =>
      api<Device>(`/devices/${encodeURIComponent(device.id)}`, { method: "PUT", body: { location, version: device.version } }),
    onSuccess: (updated) => {
      queryClient.setQueryData(["devices", "one", device.id], updated);
      toast.success("Location saved");
    },
    onError: (err) => {
      if (err instanceof ApiError && err.status === 409) void queryClient.invalidateQueries({ queryKey: ["devices", "one", device.id] });
      const fields = formFieldErrors(err, { "location.lat": "lat", "location.lon": "lon" });
      if (fields.lat) setError("lat", { message: fields.lat });
      if (fields.lon) setError("lon", { message: fields.lon });
      if (!fields.lat && !fields.lon) toast.error(errorMessage(err));
    },
  });
  const coordinate = (min: number, max: number) => ({
    validate: (v: string) => (v.trim() !== "" && Number(v) >= min && Number(v) <= max) || `between ${min} and ${max}`,
  });
  return (
    <Card title="Set the location">
      <form className="flex flex-wrap items-end gap-3" onSubmit={handleSubmit((f) => save.mutate({ lat: Number(f.lat), lon: Number(f.lon) }))} noValidate>
        <Field label="Latitude" error={errors.lat?.message}>
          <input className={inputClass} inputMode="decimal" {...register("lat", coordinate(-90, 90))} />
        </Field>
        <Field label="Longitude" error={errors.lon?.message}>
          <input className={inputClass} inputMode="decimal" {...register("lon", coordinate(-180, 180))} />
        </Field>
        <Button type="submit" busy={save.isPending}>
          Save location
        </Button>
        {device.location && (
          <Button variant="ghost" onClick={() => save.mutate(null)}>
            Clear
          </Button>
        )}
      </form>
    </Card>
  );
}
