// Schema-driven completion in the YAML view: step types after `type:`, and keys (a runbook's at
// the top level, a step's inside `steps`), all read from the runbook JSON Schema.
import type { CompletionContext, CompletionResult } from "@codemirror/autocomplete";
import { stepTypes, type Schema } from "./types";

export function schemaCompletion(schema: () => Schema | null) {
  return (context: CompletionContext): CompletionResult | null => {
    const s = schema();
    if (!s) return null;
    const line = context.state.doc.lineAt(context.pos);
    const before = line.text.slice(0, context.pos - line.from);
    const word = context.matchBefore(/[\w-]*$/);
    if (!word) return null;
    if (/^\s*(-\s+)?type:\s*[\w-]*$/.test(before)) {
      return { from: word.from, options: stepTypes(s).map((t) => ({ label: t, type: "enum" })) };
    }
    const key = /^(\s*)(-\s+)?[\w-]*$/.exec(before);
    if (!key || (word.from === word.to && !context.explicit)) return null;
    const nested = key[1].length > 0 || !!key[2];
    const props: Record<string, unknown> = nested ? (s.$defs?.Step?.properties ?? {}) : (s.properties ?? {});
    return { from: word.from, options: Object.keys(props).map((k) => ({ label: `${k}: `, displayLabel: k, type: "property" })) };
  };
}
