// The parameter form of a runbook, generated from its JSON Schema (`parameters`).
import { useState, type FormEvent } from "react";
import type { JsonSchema } from "./api";

type Values = Record<string, string | boolean>;

function kind(schema: JsonSchema): string {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (schema.enum) return "enum";
  return type ?? "string";
}

function initial(schema: JsonSchema): string | boolean {
  const k = kind(schema);
  if (k === "boolean") return schema.default === true;
  if (schema.default === undefined || schema.default === null) return "";
  return k === "array" || k === "object" ? JSON.stringify(schema.default) : String(schema.default);
}

export function toParams(schema: JsonSchema, values: Values): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(schema.properties ?? {})) {
    const value = values[name];
    const k = kind(field);
    if (k === "boolean") {
      params[name] = value === true;
      continue;
    }
    if (value === "" || value === undefined) continue;
    const text = String(value);
    if (k === "integer" || k === "number") {
      const n = Number(text);
      params[name] = Number.isNaN(n) ? text : n;
    } else if (k === "array" || k === "object") {
      try {
        params[name] = JSON.parse(text);
      } catch {
        throw new Error(`${name}: not valid JSON`);
      }
    } else if (k === "enum") {
      const option = (field.enum ?? []).find((o) => String(o) === text);
      params[name] = option ?? text;
    } else {
      params[name] = text;
    }
  }
  return params;
}

export function ParamForm({
  schema,
  canRun,
  onRun,
}: {
  schema: JsonSchema | undefined;
  canRun: boolean;
  onRun: (params: Record<string, unknown>) => Promise<void>;
}) {
  const properties = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  const [values, setValues] = useState<Values>(() =>
    Object.fromEntries(Object.entries(properties).map(([n, f]) => [n, initial(f)])),
  );
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError("");
    setBusy(true);
    try {
      await onRun(toParams(schema ?? {}, values));
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  const set = (name: string, value: string | boolean) => setValues((v) => ({ ...v, [name]: value }));
  return (
    <form className="param-form" onSubmit={submit} aria-label="Parameters">
      {Object.keys(properties).length === 0 && <p className="muted">No parameters.</p>}
      {Object.entries(properties).map(([name, field]) => {
        const k = kind(field);
        const id = `param-${name}`;
        const label = (
          <label htmlFor={id}>
            {name}
            {required.has(name) && <span className="required" aria-label="required"> *</span>}
            {field.description && <span className="hint"> — {field.description}</span>}
          </label>
        );
        if (k === "boolean")
          return (
            <div className="field check" key={name}>
              <input id={id} name={name} type="checkbox" checked={values[name] === true} onChange={(e) => set(name, e.target.checked)} />
              {label}
            </div>
          );
        if (k === "enum")
          return (
            <div className="field" key={name}>
              {label}
              <select id={id} name={name} value={String(values[name])} onChange={(e) => set(name, e.target.value)}>
                {!required.has(name) && <option value="" />}
                {(field.enum ?? []).map((o) => (
                  <option key={String(o)} value={String(o)}>
                    {String(o)}
                  </option>
                ))}
              </select>
            </div>
          );
        const textual = k === "array" || k === "object";
        return (
          <div className="field" key={name}>
            {label}
            {textual ? (
              <textarea id={id} name={name} rows={2} value={String(values[name])} onChange={(e) => set(name, e.target.value)} placeholder="JSON" />
            ) : (
              <input
                id={id}
                name={name}
                type={k === "integer" || k === "number" ? "number" : "text"}
                step={k === "integer" ? 1 : "any"}
                min={field.minimum}
                max={field.maximum}
                required={required.has(name)}
                value={String(values[name])}
                onChange={(e) => set(name, e.target.value)}
              />
            )}
          </div>
        );
      })}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {canRun && (
        <button type="submit" className="primary" disabled={busy}>
          ▶ Run
        </button>
      )}
    </form>
  );
}
