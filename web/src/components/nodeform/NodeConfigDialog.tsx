/**
 * The configuration dialog of one pipeline node: a form generated from the node type's config
 * JSON Schema (react-jsonschema-form with the console's theme), drawing tools for zones and
 * lines over a camera snapshot, local validation on save (the API stays the authority: the
 * issues it reported for this node can be passed in and are shown on their fields).
 *
 * Usage from the pipeline editor:
 *
 *     <NodeConfigDialog
 *       open={editing !== null}
 *       onClose={() => setEditing(null)}
 *       node={editing}                       // {id, type, config}
 *       manifest={findCatalogNode(catalog, editing.type)}
 *       onSave={(config) => updateNode(editing.id, config)}
 *       readOnly={!canEdit}
 *       pipelineNodes={nodes}                // every node of the document
 *       camera={upstreamCamera}              // {type, config} of the camera feeding this node
 *       errors={nodeConfigIssues(apiError.details, editing.id)}
 *     />
 */
import Form from "@rjsf/core";
import type { RJSFValidationError } from "@rjsf/utils";
import validator from "@rjsf/validator-ajv8";
import { useEffect, useMemo, useRef, useState } from "react";
import { Button, Modal } from "../ui";
import { isCameraType, type CatalogNode, type PipelineNodeLike } from "./catalog";
import { fields, type NodeFormContext } from "./fields";
import { issuesToErrorTree, normalizeSchema, pruneConfig, type ConfigIssue, type UiSchema } from "./schema";
import { useCameraSnapshot, type CameraRef } from "./snapshot";
import { templates, widgets } from "./theme";

export type { CameraRef } from "./snapshot";
export type { ConfigIssue } from "./schema";

export interface NodeConfigDialogProps {
  open: boolean;
  onClose: () => void;
  /** The node being edited; its `config` fills the form. */
  node: PipelineNodeLike;
  /** The node type's catalog entry (its `config_schema` drives the form). */
  manifest: CatalogNode;
  /** Called with the new config once it passes the local validation. */
  onSave: (config: Record<string, unknown>) => void;
  /** Show the config without edit controls and without Save (viewers). */
  readOnly?: boolean;
  /**
   * Every node of the pipeline: when `camera` is not given, the drawing takes its snapshot
   * from the camera nodes among them (a choice when there are several).
   */
  pipelineNodes?: PipelineNodeLike[];
  /**
   * The camera the zone or line is drawn on — the camera node upstream of this node, as
   * `{type, config}` (e.g. `{type: "aios/camera.device@1", config: {device_id: "cam-1"}}`).
   */
  camera?: CameraRef;
  /** Problems the API reported in this node's config (`nodeConfigIssues(details, node.id)`). */
  errors?: ConfigIssue[];
}

/** Whether a UI schema contains a drawing field. */
function hasDrawing(ui: unknown): boolean {
  if (typeof ui !== "object" || ui === null) return false;
  const u = ui as UiSchema;
  if (u["ui:field"] === "polygon" || u["ui:field"] === "line") return true;
  return Object.values(u).some(hasDrawing);
}

const MESSAGES: Record<string, (e: RJSFValidationError) => string> = {
  required: () => "is required",
  pattern: () => "does not have the expected form",
  minItems: (e) => `needs at least ${String(e.params?.limit)} item(s)`,
  maxItems: (e) => `takes at most ${String(e.params?.limit)} item(s)`,
  additionalProperties: (e) => `unknown field '${String(e.params?.additionalProperty)}'`,
  anyOf: () => "is not an allowed value",
  oneOf: () => "is not an allowed value",
};

/**
 * Shorter messages. A value that matches none of the forms a field allows gets one message
 * instead of one per form.
 */
export function transformErrors(errors: RJSFValidationError[]): RJSFValidationError[] {
  const unions = new Set(errors.filter((e) => e.name === "anyOf" || e.name === "oneOf").map((e) => e.property));
  return errors
    .filter((e) => !(unions.has(e.property) && e.name !== "anyOf" && e.name !== "oneOf"))
    .map((e) => {
      const m = e.name ? MESSAGES[e.name]?.(e) : undefined;
      if (!m) return e;
      // ajv8's stack names the field by its title: "'Polygon' must …", "must have required property 'Camera'".
      const quoted = /'([^']+)'/.exec(e.name === "required" ? (e.message ?? "") : e.stack)?.[1];
      const label = quoted ?? (e.property ?? "").replace(/^\./, "");
      return { ...e, message: m, stack: `${label}: ${m}` };
    });
}

export function NodeConfigDialog(props: NodeConfigDialogProps) {
  if (!props.open) return null;
  return <NodeConfigDialogBody key={props.node.id} {...props} />;
}

function NodeConfigDialogBody({ onClose, node, manifest, onSave, readOnly = false, pipelineNodes, camera, errors }: NodeConfigDialogProps) {
  const { schema, uiSchema } = useMemo(() => normalizeSchema(manifest.config_schema), [manifest.config_schema]);
  const drawing = useMemo(() => hasDrawing(uiSchema), [uiSchema]);
  const cameras = useMemo<{ label: string; ref: CameraRef }[]>(() => {
    if (camera) return [{ label: "camera", ref: camera }];
    return (pipelineNodes ?? [])
      .filter((n) => n.id !== node.id && isCameraType(n.type))
      .map((n) => ({ label: n.id, ref: { type: n.type, config: n.config } }));
  }, [camera, pipelineNodes, node.id]);
  const [cameraIndex, setCameraIndex] = useState(0);
  const snapshot = useCameraSnapshot(cameras[cameraIndex]?.ref, drawing);
  const [formData, setFormData] = useState<Record<string, unknown>>(() => structuredClone(node.config ?? {}));
  const extraErrors = useMemo(() => issuesToErrorTree(errors), [errors]);
  const formRef = useRef<Form>(null);
  const bodyRef = useRef<HTMLDivElement>(null);

  const formContext = useMemo<NodeFormContext>(
    () => ({
      snapshot,
      cameras: cameras.map((c) => ({ label: c.label })),
      selectedCamera: cameraIndex,
      selectCamera: setCameraIndex,
    }),
    [snapshot, cameras, cameraIndex],
  );

  // Focus the form so Escape closes the dialog at once; Escape outside it closes it too.
  useEffect(() => {
    const first = bodyRef.current?.querySelector<HTMLElement>("input:not([type=hidden]):not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex='0']");
    first?.focus({ preventScroll: true });
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Escape") return;
      const dialog = bodyRef.current?.closest("[role=dialog]");
      if (dialog && e.target instanceof Node && dialog.contains(e.target)) return; // the dialog handles it
      onClose();
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [onClose]);

  function save() {
    if (readOnly) return;
    const ok = formRef.current?.validateForm() ?? false;
    if (!ok) return;
    onSave(pruneConfig(formData, node.config ?? {}, manifest.config_schema));
  }

  const rootErrors = extraErrors.__errors ?? [];
  const hasFields = Object.keys((schema.properties as object | undefined) ?? {}).length > 0;

  return (
    <Modal
      open
      wide
      onClose={onClose}
      title={`${manifest.title} · ${node.id}`}
      footer={
        <>
          <span className="mr-auto self-center font-mono text-xs text-slate-400">{node.type}</span>
          <Button variant="secondary" onClick={onClose}>
            {readOnly ? "Close" : "Cancel"}
          </Button>
          {!readOnly && <Button onClick={save}>Save</Button>}
        </>
      }
    >
      <div ref={bodyRef} data-testid="node-config-form" data-node-id={node.id}>
        <p className="mb-3 text-sm text-slate-600">{manifest.description}</p>
        {readOnly && <p className="mb-3 rounded-md bg-slate-100 px-3 py-2 text-xs text-slate-600">Read only: your role cannot change pipelines.</p>}
        {rootErrors.length > 0 && (
          <div role="alert" className="mb-3 rounded-md border border-red-200 bg-red-50 px-3 py-2 text-xs text-red-700">
            {rootErrors.map((m, i) => (
              <p key={i}>{m}</p>
            ))}
          </div>
        )}
        {hasFields ? (
          <Form
            ref={formRef}
            schema={schema}
            uiSchema={{ ...uiSchema, "ui:submitButtonOptions": { norender: true } }}
            formData={formData}
            onChange={(e) => setFormData((e.formData ?? {}) as Record<string, unknown>)}
            onSubmit={() => save()}
            validator={validator}
            templates={templates}
            widgets={widgets}
            fields={fields}
            formContext={formContext}
            disabled={readOnly}
            extraErrors={extraErrors as never}
            transformErrors={transformErrors}
            showErrorList="top"
            noHtml5Validate
            experimental_defaultFormStateBehavior={{ arrayMinItems: { populate: "never" }, emptyObjectFields: "populateAllDefaults" }}
          >
            <></>
          </Form>
        ) : (
          <p className="text-sm text-slate-500">This node has no settings.</p>
        )}
      </div>
    </Modal>
  );
}
