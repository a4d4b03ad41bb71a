import { useState } from "react";
import { useForm } from "react-hook-form";
import { Navigate, useLocation, useNavigate } from "react-router-dom";
import { login } from "../api/auth";
import { errorMessage } from "../api/client";
import { Button, Field, inputClass } from "../components/ui";
import { useAuth } from "../stores/auth";

interface LoginForm {
  username: string;
  password: string;
}

export default function LoginPage() {
  const signedIn = useAuth((s) => s.refreshToken !== null);
  const navigate = useNavigate();
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from ?? "/";
  const [error, setError] = useState<string | null>(null);
  const { register, handleSubmit, formState } = useForm<LoginForm>();

  if (signedIn) return <Navigate to={from} replace />;

  const onSubmit = handleSubmit(async ({ username, password }) => {
    setError(null);
    try {
      await login(username.trim(), password);
      navigate(from, { replace: true });
    } catch (err) {
      setError(errorMessage(err));
    }
  });

  return (
    <div className="flex min-h-screen items-center justify-center bg-slate-900 p-4">
      <form onSubmit={onSubmit} className="w-full max-w-sm space-y-4 rounded-xl bg-white p-8 shadow-xl" aria-label="Sign in">
        <div className="flex items-center gap-2">
          <img src="/favicon.svg" alt="" className="h-8 w-8" />
          <h1 className="text-xl font-semibold">AIOS console</h1>
        </div>
        <Field label="Username" error={formState.errors.username?.message}>
          <input className={inputClass} autoComplete="username" autoFocus {...register("username", { required: "Enter your username" })} />
        </Field>
        <Field label="Password" error={formState.errors.password?.message}>
          <input type="password" className={inputClass} autoComplete="current-password" {...register("password", { required: "Enter your password" })} />
        </Field>
        {error && (
          <p role="alert" className="text-sm text-red-600">
            {error}
          </p>
        )}
        <Button type="submit" className="w-full" busy={formState.isSubmitting}>
          Sign in
        </Button>
      </form>
    </div>
  );
}
