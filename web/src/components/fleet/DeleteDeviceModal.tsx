/** Confirm, then `DELETE /devices/{id}`. */
import { useMutation, useQueryClient } from "@tanstack/react-query";
import toast from "react-hot-toast";
import { api, errorMessage } from "../../api/client";
import { Button, Modal } from "../ui";
import type { Device } from "./types";

export function DeleteDeviceModal({ device, onClose, onDeleted }: { device: Device | null; onClose: () => void; onDeleted?: () => void }) {
  const queryClient = useQueryClient();
  const remove = useMutation({
    mutationFn: (id: string) => api<void>(`/devices/${encodeURIComponent(id)}`, { method: "DELETE" }),
    onSuccess: () => {
      toast.success(`Deleted ${device?.name ?? "the device"}`);
      void queryClient.invalidateQueries({ queryKey: ["devices"] });
      void queryClient.invalidateQueries({ queryKey: ["analytics", "devices"] });
      onClose();
      onDeleted?.();
    },
    onError: (err) => toast.error(errorMessage(err)),
  });
  return (
    <Modal
      title="Delete device"
      open={device !== null}
      onClose={onClose}
      footer={
        <>
          <Button variant="secondary" onClick={onClose}>
            Cancel
          </Button>
          <Button variant="danger" busy={remove.isPending} onClick={() => device && remove.mutate(device.id)}>
            Delete
          </Button>
        </>
      }
    >
      <p className="text-sm text-slate-700">
        Delete <strong>{device?.name}</strong> (<span className="font-mono">{device?.id}</span>) from the fleet? This cannot be undone.
      </p>
    </Modal>
  );
}
