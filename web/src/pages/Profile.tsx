/** Profile: the signed-in user's name and e-mail, password change, and role (read only). */
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useForm } from "react-hook-form";
import toast from "react-hot-toast";
import { api, ApiError, errorMessage } from "../api/client";
import type { TokenResponse, User } from "../api/types";
import {
  formFieldErrors,
  PASSWORD_MIN,
  passwordProblem,
  profileUpdateBody,
  ROLE_DESCRIPTIONS,
  type ProfileFormValues,
} from "../components/settings/lib";
import { RoleBadge } from "../components/settings/UsersTab";
import { Button, Card, ErrorNote, Field, inputClass, PageHeader, Spinner } from "../components/ui";
import { dateTime } from "../lib/format";
import { useAuth } from "../stores/auth";

export default function ProfilePage() {
  const setUser = useAuth((s) => s.setUser);
  // the stored user may be old (another tab, an admin's change): read it fresh
  const me = useQuery({
    queryKey: ["me"],
    queryFn: async () => {
      const user = await api<User>("/auth/me");
      setUser(user);
      return user;
    },
  });
  return (
    <div className="max-w-3xl space-y-4">
      <PageHeader title="Profile" subtitle="Your name, e-mail and password" />
      {me.isPending ? <Spinner /> : me.isError ? <ErrorNote error={me.error} /> : <ProfileContent user={me.data} />}
    </div>
  );
}

function ProfileContent({ user }: { user: User }) {
  return (
    <>
      <Card title="Account">
        <dl className="grid grid-cols-[8rem_1fr] gap-y-2 text-sm">
          <dt className="text-slate-500">Username</dt>
          <dd className="font-medium" data-testid="profile-username">
            {user.username}
          </dd>
          <dt className="text-slate-500">Role</dt>
          <dd data-testid="profile-role">
            <RoleBadge role={user.role} />
            <p className="mt-1 text-xs text-slate-500">{ROLE_DESCRIPTIONS[user.role]} Only an administrator changes roles.</p>
          </dd>
          <dt className="text-slate-500">Member since</dt>
          <dd>{dateTime(user.created_at)}</dd>
        </dl>
      </Card>
      <DetailsForm user={user} />
      <PasswordForm />
    </>
  );
}

function DetailsForm({ user }: { user: User }) {
  const queryClient = useQueryClient();
  const setUser = useAuth((s) => s.setUser);
  const { register, handleSubmit, setError, reset, formState } = useForm<ProfileFormValues>({
    values: { display_name: user.display_name, email: user.email ?? "" },
  });
  const [formError, setFormError] = useState<string | null>(null);
  const onSubmit = handleSubmit(async (values) => {
    setFormError(null);
    const body = profileUpdateBody(values, user);
    if (!body) {
      toast("Nothing changed");
      return;
    }
    try {
      const updated = await api<User>(`/users/${encodeURIComponent(user.id)}`, { method: "PUT", body });
      setUser(updated);
      queryClient.setQueryData(["me"], updated);
      reset({ display_name: updated.display_name, email: updated.email ?? "" });
      toast.success("Profile saved");
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        await queryClient.invalidateQueries({ queryKey: ["me"] });
        setFormError("Your account changed meanwhile (elsewhere). It was reloaded: apply your change again.");
        return;
      }
      const fields = formFieldErrors(err, ["display_name", "email"]);
      for (const [field, message] of Object.entries(fields)) setError(field as keyof ProfileFormValues, { message });
      if (Object.keys(fields).length === 0) setFormError(errorMessage(err));
    }
  });
  return (
    <Card title="Name and e-mail">
      <form onSubmit={onSubmit} className="space-y-3" aria-label="Name and e-mail" noValidate>
        <Field label="Display name" error={formState.errors.display_name?.message} hint="Shown in the header and in the audit log">
          <input className={inputClass} autoComplete="name" {...register("display_name", { maxLength: { value: 200, message: "At most 200 characters" } })} />
        </Field>
        <Field label="E-mail" error={formState.errors.email?.message}>
          <input
            type="email"
            className={inputClass}
            autoComplete="email"
            {...register("email", { pattern: { value: /^[^@\s]+@[^@\s]+$/, message: "Enter an e-mail address" } })}
          />
        </Field>
        {formError && (
          <p role="alert" className="text-sm text-red-600">
            {formError}
          </p>
        )}
        <Button type="submit" busy={formState.isSubmitting}>
          Save profile
        </Button>
      </form>
    </Card>
  );
}

interface PasswordValues {
  current_password: string;
  new_password: string;
  confirm: string;
}

function PasswordForm() {
  const setTokens = useAuth((s) => s.setTokens);
  const { register, handleSubmit, setError, reset, formState } = useForm<PasswordValues>({
    defaultValues: { current_password: "", new_password: "", confirm: "" },
  });
  const [done, setDone] = useState(false);
  const [formError, setFormError] = useState<string | null>(null);
  const onSubmit = handleSubmit(async (values) => {
    setDone(false);
    setFormError(null);
    const problem = passwordProblem(values.new_password, values.confirm, values.current_password);
    if (problem) {
      setError(problem.startsWith("The two") ? "confirm" : "new_password", { message: problem });
      return;
    }
    try {
      // the API signs out every session of the account and answers with new tokens for this one
      const tokens = await api<TokenResponse>("/auth/password", {
        method: "POST",
        body: { current_password: values.current_password, new_password: values.new_password },
      });
      setTokens(tokens);
      reset();
      setDone(true);
      toast.success("Password changed");
    } catch (err) {
      const fields = formFieldErrors(err, ["current_password", "new_password"]);
      if (fields.current_password === "does not match") fields.current_password = "This is not your current password";
      for (const [field, message] of Object.entries(fields)) setError(field as keyof PasswordValues, { message });
      if (Object.keys(fields).length === 0) setFormError(errorMessage(err));
    }
  });
  return (
    <Card title="Password">
      <form onSubmit={onSubmit} className="space-y-3" aria-label="Change password" noValidate>
        <Field label="Current password" error={formState.errors.current_password?.message}>
          <input type="password" className={inputClass} autoComplete="current-password" {...register("current_password", { required: "Enter your current password" })} />
        </Field>
        <Field label="New password" error={formState.errors.new_password?.message} hint={`At least ${PASSWORD_MIN} characters`}>
          <input type="password" className={inputClass} autoComplete="new-password" {...register("new_password", { required: "Enter a new password" })} />
        </Field>
        <Field label="Confirm new password" error={formState.errors.confirm?.message}>
          <input type="password" className={inputClass} autoComplete="new-password" {...register("confirm", { required: "Type the new password again" })} />
        </Field>
        {formError && (
          <p role="alert" className="text-sm text-red-600">
            {formError}
          </p>
        )}
        {done && (
          <p role="status" className="rounded-md border border-emerald-200 bg-emerald-50 p-2 text-sm text-emerald-800" data-testid="password-changed">
            Password changed. Every other session of your account (other browsers and devices) was signed out; this one stays
            signed in.
          </p>
        )}
        <Button type="submit" busy={formState.isSubmitting}>
          Change password
        </Button>
      </form>
    </Card>
  );
}
