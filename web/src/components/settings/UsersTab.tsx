/** Users and roles (admins): list, create, change role, disable, unlock, delete. */
import { useInfiniteQuery, useMutation, useQueryClient } from "@tanstack/react-query";
import clsx from "clsx";
import { Lock, Pencil, Plus, Trash2 } from "lucide-react";
import { useState } from "react";
import { useForm } from "react-hook-form";
import toast from "react-hot-toast";
import { api, ApiError, errorMessage } from "../../api/client";
import type { Page, Role, User } from "../../api/types";
import { dateTime } from "../../lib/format";
import { useAuth } from "../../stores/auth";
import { Button, Card, EmptyState, ErrorNote, Field, inputClass, LoadMore, Modal, Spinner } from "../ui";
import {
  formFieldErrors,
  isLocked,
  PASSWORD_MIN,
  ROLE_DESCRIPTIONS,
  roleLabel,
  ROLES,
  userCreateBody,
  type UserFormValues,
} from "./lib";

const USERS_KEY = ["users"] as const;

export function RoleBadge({ role }: { role: string }) {
  return (
    <span
      className={clsx(
        "inline-flex rounded-full px-2 py-0.5 text-xs font-medium ring-1",
        role === "admin" && "bg-violet-50 text-violet-700 ring-violet-200",
        role === "operator" && "bg-sky-50 text-sky-700 ring-sky-200",
        role !== "admin" && role !== "operator" && "bg-slate-100 text-slate-600 ring-slate-200",
      )}
    >
      {roleLabel(role)}
    </span>
  );
}

export function UsersTab() {
  const me = useAuth((s) => s.user);
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<User | null>(null);
  const [deleting, setDeleting] = useState<User | null>(null);
  const users = useInfiniteQuery({
    queryKey: USERS_KEY,
    queryFn: ({ pageParam }) => api<Page<User>>("/users", { query: { limit: 200, cursor: pageParam } }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const items = users.data?.pages.flatMap((p) => p.items) ?? [];

  return (
    <div className="space-y-4">
      <Card
        title="Users"
        actions={
          <Button onClick={() => setCreating(true)}>
            <Plus className="h-4 w-4" aria-hidden />
            New user
          </Button>
        }
      >
        {users.isPending ? (
          <Spinner />
        ) : users.isError ? (
          <ErrorNote error={users.error} />
        ) : items.length === 0 ? (
          <EmptyState>No users.</EmptyState>
        ) : (
          <div className="overflow-x-auto">
            <table className="w-full text-left text-sm" aria-label="Users">
              <thead className="text-xs uppercase text-slate-500">
                <tr>
                  <th className="py-2 pr-3 font-medium">Username</th>
                  <th className="py-2 pr-3 font-medium">Name</th>
                  <th className="py-2 pr-3 font-medium">E-mail</th>
                  <th className="py-2 pr-3 font-medium">Role</th>
                  <th className="py-2 pr-3 font-medium">State</th>
                  <th className="py-2 pr-3 font-medium">Updated</th>
                  <th className="py-2 font-medium">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody className="divide-y divide-slate-100">
                {items.map((user) => (
                  <tr key={user.id} data-testid={`user-row-${user.username}`}>
                    <td className="py-2 pr-3 font-medium text-slate-800">
                      {user.username}
                      {user.id === me?.id && <span className="ml-1.5 text-xs text-slate-400">(you)</span>}
                    </td>
                    <td className="py-2 pr-3">{user.display_name || "—"}</td>
                    <td className="py-2 pr-3">{user.email || "—"}</td>
                    <td className="py-2 pr-3">
                      <RoleBadge role={user.role} />
                    </td>
                    <td className="py-2 pr-3">
                      <UserState user={user} />
                    </td>
                    <td className="py-2 pr-3 text-slate-500">{dateTime(user.updated_at)}</td>
                    <td className="py-2 text-right whitespace-nowrap">
                      <Button variant="ghost" aria-label={`Edit ${user.username}`} title="Edit" onClick={() => setEditing(user)}>
                        <Pencil className="h-4 w-4" aria-hidden />
                      </Button>
                      <Button
                        variant="ghost"
                        aria-label={`Delete ${user.username}`}
                        title={user.id === me?.id ? "You cannot delete your own account" : "Delete"}
                        disabled={user.id === me?.id}
                        onClick={() => setDeleting(user)}
                      >
                        <Trash2 className="h-4 w-4" aria-hidden />
                      </Button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            <LoadMore query={users} />
          </div>
        )}
      </Card>
      <RolesCard />
      <CreateUserModal open={creating} onClose={() => setCreating(false)} />
      {editing && <EditUserModal user={editing} onClose={() => setEditing(null)} />}
      {deleting && <DeleteUserModal user={deleting} onClose={() => setDeleting(null)} />}
    </div>
  );
}

function UserState({ user }: { user: User }) {
  if (user.disabled) return <span className="text-xs font-medium text-slate-500">Disabled</span>;
  if (isLocked(user.locked_until)) {
    return (
      <span className="inline-flex items-center gap-1 text-xs font-medium text-amber-700" title="Locked after failed sign-ins">
        <Lock className="h-3.5 w-3.5" aria-hidden />
        Locked until {dateTime(user.locked_until)}
      </span>
    );
  }
  return <span className="text-xs font-medium text-emerald-700">Active</span>;
}

function RolesCard() {
  return (
    <Card title="What each role can do">
      <dl className="grid gap-3 text-sm md:grid-cols-3">
        {ROLES.map((role) => (
          <div key={role}>
            <dt>
              <RoleBadge role={role} />
            </dt>
            <dd className="mt-1 text-slate-600">{ROLE_DESCRIPTIONS[role]}</dd>
          </div>
        ))}
      </dl>
    </Card>
  );
}

const CREATE_FIELDS = ["username", "display_name", "email", "role", "password"] as const;

function CreateUserModal({ open, onClose }: { open: boolean; onClose: () => void }) {
  const queryClient = useQueryClient();
  const { register, handleSubmit, setError, reset, formState } = useForm<UserFormValues>({
    defaultValues: { username: "", display_name: "", email: "", role: "viewer", password: "" },
  });
  const [formError, setFormError] = useState<string | null>(null);
  const close = () => {
    reset();
    setFormError(null);
    onClose();
  };
  const onSubmit = handleSubmit(async (values) => {
    setFormError(null);
    try {
      const user = await api<User>("/users", { method: "POST", body: userCreateBody(values) });
      toast.success(`User ${user.username} created`);
      await queryClient.invalidateQueries({ queryKey: USERS_KEY });
      close();
    } catch (err) {
      const fields = formFieldErrors(err, CREATE_FIELDS);
      if (err instanceof ApiError && err.code === "username_taken") fields.username = err.message;
      for (const [field, message] of Object.entries(fields)) setError(field as keyof UserFormValues, { message });
      if (Object.keys(fields).length === 0) setFormError(errorMessage(err));
    }
  });
  return (
    <Modal
      title="New user"
      open={open}
      onClose={close}
      footer={
        <>
          <Button variant="secondary" onClick={close}>
            Cancel
          </Button>
          <Button type="submit" form="create-user" busy={formState.isSubmitting}>
            Create user
          </Button>
        </>
      }
    >
      <form id="create-user" onSubmit={onSubmit} className="space-y-3" noValidate>
        <Field label="Username" error={formState.errors.username?.message} hint="Letters, digits and _ . @ -">
          <input
            className={inputClass}
            autoComplete="off"
            {...register("username", {
              required: "Enter a username",
              pattern: { value: /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$/, message: "Letters, digits and _ . @ - (starting with a letter or digit)" },
            })}
          />
        </Field>
        <Field label="Display name" error={formState.errors.display_name?.message}>
          <input className={inputClass} autoComplete="off" {...register("display_name", { maxLength: { value: 200, message: "At most 200 characters" } })} />
        </Field>
        <Field label="E-mail" error={formState.errors.email?.message}>
          <input
            type="email"
            className={inputClass}
            autoComplete="off"
            {...register("email", { pattern: { value: /^[^@\s]+@[^@\s]+$/, message: "Enter an e-mail address" } })}
          />
        </Field>
        <Field label="Role" error={formState.errors.role?.message}>
          <select className={inputClass} {...register("role")}>
            {ROLES.map((role) => (
              <option key={role} value={role}>
                {roleLabel(role)}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Initial password" error={formState.errors.password?.message} hint={`At least ${PASSWORD_MIN} characters; the user can change it in Profile.`}>
          <input
            type="password"
            className={inputClass}
            autoComplete="new-password"
            {...register("password", {
              required: "Enter an initial password",
              minLength: { value: PASSWORD_MIN, message: `Use at least ${PASSWORD_MIN} characters` },
            })}
          />
        </Field>
        {formError && (
          <p role="alert" className="text-sm text-red-600">
            {formError}
          </p>
        )}
      </form>
    </Modal>
  );
}

interface EditValues {
  display_name: string;
  email: string;
  role: Role;
  disabled: boolean;
  password: string;
}

const EDIT_FIELDS = ["display_name", "email", "role", "disabled", "password"] as const;

function EditUserModal({ user, onClose }: { user: User; onClose: () => void }) {
  const queryClient = useQueryClient();
  const me = useAuth((s) => s.user);
  const setUser = useAuth((s) => s.setUser);
  const self = me?.id === user.id;
  const locked = isLocked(user.locked_until);
  const { register, handleSubmit, setError, formState } = useForm<EditValues>({
    defaultValues: { display_name: user.display_name, email: user.email ?? "", role: user.role, disabled: user.disabled, password: "" },
  });
  const [formError, setFormError] = useState<string | null>(null);
  const save = useMutation({
    mutationFn: (body: Record<string, unknown>) => api<User>(`/users/${encodeURIComponent(user.id)}`, { method: "PUT", body }),
    onSuccess: async (updated) => {
      if (self) setUser(updated);
      toast.success(`User ${updated.username} saved`);
      await queryClient.invalidateQueries({ queryKey: USERS_KEY });
      onClose();
    },
  });
  const submit = (extra: Record<string, unknown> = {}) =>
    handleSubmit(async (values) => {
      setFormError(null);
      const body: Record<string, unknown> = { version: user.version, ...extra };
      if (values.display_name.trim() !== user.display_name) body.display_name = values.display_name.trim();
      const email = values.email.trim();
      if (email !== (user.email ?? "")) body.email = email || null;
      if (values.role !== user.role) body.role = values.role;
      if (values.disabled !== user.disabled) body.disabled = values.disabled;
      if (values.password) body.password = values.password;
      if (Object.keys(body).length === 1) {
        onClose();
        return;
      }
      try {
        await save.mutateAsync(body);
      } catch (err) {
        const fields = formFieldErrors(err, EDIT_FIELDS);
        for (const [field, message] of Object.entries(fields)) setError(field as keyof EditValues, { message });
        if (Object.keys(fields).length === 0) setFormError(errorMessage(err));
      }
    });
  return (
    <Modal
      title={`Edit ${user.username}`}
      open
      onClose={onClose}
      footer={
        <>
          {locked && (
            <Button variant="secondary" className="mr-auto" busy={save.isPending} onClick={submit({ unlock: true })}>
              Unlock account
            </Button>
          )}
          <Button variant="secondary" onClick={onClose}>
            Cancel
          </Button>
          <Button type="submit" form="edit-user" busy={formState.isSubmitting}>
            Save
          </Button>
        </>
      }
    >
      <form id="edit-user" onSubmit={submit()} className="space-y-3" noValidate>
        {locked && (
          <p className="rounded-md bg-amber-50 p-2 text-sm text-amber-800">
            Locked after failed sign-ins until {dateTime(user.locked_until)}.
          </p>
        )}
        <Field label="Display name" error={formState.errors.display_name?.message}>
          <input className={inputClass} {...register("display_name", { maxLength: { value: 200, message: "At most 200 characters" } })} />
        </Field>
        <Field label="E-mail" error={formState.errors.email?.message}>
          <input
            type="email"
            className={inputClass}
            {...register("email", { pattern: { value: /^[^@\s]+@[^@\s]+$/, message: "Enter an e-mail address" } })}
          />
        </Field>
        <Field label="Role" error={formState.errors.role?.message} hint={self ? "You cannot change your own role here if you are the last admin." : undefined}>
          <select className={inputClass} {...register("role")}>
            {ROLES.map((role) => (
              <option key={role} value={role}>
                {roleLabel(role)}
              </option>
            ))}
          </select>
        </Field>
        <label className="flex items-center gap-2 text-sm">
          <input type="checkbox" className="h-4 w-4" disabled={self} {...register("disabled")} />
          <span>Disabled (cannot sign in; signed out everywhere)</span>
        </label>
        <Field
          label="New password"
          error={formState.errors.password?.message}
          hint="Leave empty to keep the password. Setting one signs the user out everywhere."
        >
          <input
            type="password"
            className={inputClass}
            autoComplete="new-password"
            {...register("password", { minLength: { value: PASSWORD_MIN, message: `Use at least ${PASSWORD_MIN} characters` } })}
          />
        </Field>
        {formError && (
          <p role="alert" className="text-sm text-red-600">
            {formError}
          </p>
        )}
      </form>
    </Modal>
  );
}

function DeleteUserModal({ user, onClose }: { user: User; onClose: () => void }) {
  const queryClient = useQueryClient();
  const remove = useMutation({
    mutationFn: () => api(`/users/${encodeURIComponent(user.id)}`, { method: "DELETE" }),
    onSuccess: async () => {
      toast.success(`User ${user.username} deleted`);
      await queryClient.invalidateQueries({ queryKey: USERS_KEY });
      onClose();
    },
    onError: (err) => toast.error(errorMessage(err)),
  });
  return (
    <Modal
      title={`Delete ${user.username}?`}
      open
      onClose={onClose}
      footer={
        <>
          <Button variant="secondary" onClick={onClose}>
            Cancel
          </Button>
          <Button variant="danger" busy={remove.isPending} onClick={() => remove.mutate()}>
            Delete user
          </Button>
        </>
      }
    >
      <p className="text-sm text-slate-600">
        The account <strong>{user.username}</strong> ({roleLabel(user.role)}) is deleted and signed out everywhere. Its entries in
        the audit log stay.
      </p>
    </Modal>
  );
}
