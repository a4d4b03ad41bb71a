import clsx from "clsx";
import { BookOpen, Cpu, LayoutDashboard, LogOut, Settings, User, Workflow } from "lucide-react";
import { NavLink, Outlet, useNavigate } from "react-router-dom";
import { logout } from "../../api/auth";
import { useAuth } from "../../stores/auth";
import { AlertBell } from "./AlertBell";

const MENU = [
  { to: "/", label: "Dashboard", icon: LayoutDashboard, end: true },
  { to: "/fleet", label: "Fleet Management", icon: Cpu },
  { to: "/pipelines", label: "Pipelines", icon: Workflow },
  { to: "/settings", label: "Settings", icon: Settings },
  { to: "/help", label: "Documentation", icon: BookOpen },
  { to: "/profile", label: "Profile", icon: User },
];

/** The shell: side menu, header with the live alert bell and the user, the page. */
export function Layout() {
  const user = useAuth((s) => s.user);
  const navigate = useNavigate();
  return (
    <div className="flex h-screen overflow-hidden">
      <aside className="flex w-56 shrink-0 flex-col bg-slate-900 text-slate-300" aria-label="Main menu">
        <div className="flex items-center gap-2 px-4 py-4 text-white">
          <img src="/favicon.svg" alt="" className="h-7 w-7" />
          <span className="text-lg font-semibold tracking-wide">AIOS</span>
        </div>
        <nav className="flex-1 space-y-0.5 px-2">
          {MENU.map(({ to, label, icon: Icon, end }) => (
            <NavLink
              key={to}
              to={to}
              end={end}
              className={({ isActive }) =>
                clsx(
                  "flex items-center gap-2.5 rounded-md px-3 py-2 text-sm",
                  isActive ? "bg-slate-800 text-white" : "hover:bg-slate-800/60 hover:text-white",
                )
              }
            >
              <Icon className="h-4 w-4" aria-hidden />
              {label}
            </NavLink>
          ))}
        </nav>
      </aside>
      <div className="flex min-w-0 flex-1 flex-col">
        <header className="flex h-14 shrink-0 items-center justify-end gap-4 border-b border-slate-200 bg-white px-5">
          <AlertBell />
          <div className="text-right text-sm leading-tight" data-testid="current-user">
            <div className="font-medium">{user?.display_name || user?.username}</div>
            <div className="text-xs text-slate-500">{user?.role}</div>
          </div>
          <button
            type="button"
            className="rounded-md p-1.5 text-slate-500 hover:bg-slate-100 hover:text-slate-800"
            aria-label="Sign out"
            title="Sign out"
            onClick={async () => {
              await logout();
              navigate("/login");
            }}
          >
            <LogOut className="h-5 w-5" />
          </button>
        </header>
        <main className="min-h-0 flex-1 overflow-y-auto p-6">
          <Outlet />
        </main>
      </div>
    </div>
  );
}
