import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { lazy, Suspense, type ReactNode } from "react";
import { Toaster } from "react-hot-toast";
import { BrowserRouter, Navigate, Route, Routes, useLocation } from "react-router-dom";
import { ApiError } from "./api/client";
import { Layout } from "./components/layout/Layout";
import { Spinner } from "./components/ui";
import LoginPage from "./pages/Login";
import { useAuth } from "./stores/auth";

const DashboardPage = lazy(() => import("./pages/Dashboard"));
const FleetPage = lazy(() => import("./pages/Fleet"));
const DeviceDetailsPage = lazy(() => import("./pages/DeviceDetails"));
const PipelinesPage = lazy(() => import("./pages/Pipelines"));
const PipelineEditorPage = lazy(() => import("./pages/PipelineEditor"));
const SettingsPage = lazy(() => import("./pages/Settings"));
const DocumentationPage = lazy(() => import("./pages/Documentation"));
const ProfilePage = lazy(() => import("./pages/Profile"));

export const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: 5_000,
      refetchOnWindowFocus: false,
      // client errors (4xx) are answers, not outages: do not retry them
      retry: (failures, error) => !(error instanceof ApiError && error.status < 500) && failures < 2,
    },
  },
});

function RequireAuth({ children }: { children: ReactNode }) {
  const signedIn = useAuth((s) => s.refreshToken !== null);
  const location = useLocation();
  if (!signedIn) return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
  return <>{children}</>;
}

export function AppRoutes() {
  return (
    <Suspense fallback={<Spinner />}>
      <Routes>
        <Route path="/login" element={<LoginPage />} />
        <Route
          element={
            <RequireAuth>
              <Layout />
            </RequireAuth>
          }
        >
          <Route index element={<DashboardPage />} />
          <Route path="fleet" element={<FleetPage />} />
          <Route path="fleet/:deviceId" element={<DeviceDetailsPage />} />
          <Route path="pipelines" element={<PipelinesPage />} />
          <Route path="pipelines/new" element={<PipelineEditorPage />} />
          <Route path="pipelines/:pipelineId" element={<PipelineEditorPage />} />
          <Route path="settings" element={<SettingsPage />} />
          <Route path="help" element={<DocumentationPage />} />
          <Route path="profile" element={<ProfilePage />} />
          <Route path="*" element={<Navigate to="/" replace />} />
        </Route>
      </Routes>
    </Suspense>
  );
}

export default function App() {
  return (
    <QueryClientProvider client={queryClient}>
      <BrowserRouter>
        <AppRoutes />
      </BrowserRouter>
      {/* bottom left, over the side menu: clear of the toolbars (top right) and of dialogs'
          buttons (bottom right) */}
      <Toaster position="bottom-left" toastOptions={{ duration: 4000 }} />
    </QueryClientProvider>
  );
}
