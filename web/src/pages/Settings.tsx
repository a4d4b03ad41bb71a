/**
 * Settings: users and roles, integrations (secrets) and site settings, alert policies,
 * backup and restore, the audit log. Tabs a role may not use are not shown; the API refuses
 * the same calls anyway.
 */
import clsx from "clsx";
import { useSearchParams } from "react-router-dom";
import { AlertPoliciesTab } from "../components/settings/AlertPoliciesTab";
import { AuditTab } from "../components/settings/AuditTab";
import { BackupTab } from "../components/settings/BackupTab";
import { IntegrationsTab } from "../components/settings/IntegrationsTab";
import { roleLabel } from "../components/settings/lib";
import { UsersTab } from "../components/settings/UsersTab";
import { PageHeader } from "../components/ui";
import { useAuth, useCan } from "../stores/auth";

const TABS = [
  { id: "users", label: "Users and roles", admin: true, render: () => <UsersTab /> },
  { id: "integrations", label: "Integrations", admin: true, render: () => <IntegrationsTab /> },
  { id: "alerts", label: "Alert policies", admin: false, render: () => <AlertPoliciesTab /> },
  { id: "backup", label: "Backup and restore", admin: true, render: () => <BackupTab /> },
  { id: "audit", label: "Audit log", admin: true, render: () => <AuditTab /> },
] as const;

export default function SettingsPage() {
  const isAdmin = useCan("admin");
  const role = useAuth((s) => s.user?.role);
  const [params, setParams] = useSearchParams();
  const visible = TABS.filter((t) => isAdmin || !t.admin);
  const current = visible.find((t) => t.id === params.get("tab")) ?? visible[0];

  return (
    <div className="max-w-6xl">
      <PageHeader title="Settings" subtitle="Users, integrations, alert policies, backup and restore" />
      {!isAdmin && (
        <p className="mb-4 rounded-md border border-sky-200 bg-sky-50 p-3 text-sm text-sky-800" data-testid="admin-notice">
          You are signed in as {roleLabel(role)}. Users and roles, secrets, site settings, backup and restore and the audit log
          are managed by administrators.
        </p>
      )}
      <div role="tablist" aria-label="Settings sections" className="mb-4 flex flex-wrap gap-1 border-b border-slate-200">
        {visible.map((tab) => {
          const selected = tab.id === current.id;
          return (
            <button
              key={tab.id}
              type="button"
              role="tab"
              id={`tab-${tab.id}`}
              aria-selected={selected}
              aria-controls={`panel-${tab.id}`}
              className={clsx(
                "-mb-px border-b-2 px-3 py-2 text-sm font-medium",
                selected ? "border-sky-600 text-sky-700" : "border-transparent text-slate-500 hover:text-slate-800",
              )}
              onClick={() => setParams({ tab: tab.id }, { replace: true })}
            >
              {tab.label}
            </button>
          );
        })}
      </div>
      <div role="tabpanel" id={`panel-${current.id}`} aria-labelledby={`tab-${current.id}`}>
        {current.render()}
      </div>
    </div>
  );
}
