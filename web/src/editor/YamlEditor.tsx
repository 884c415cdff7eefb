// The YAML view: CodeMirror 6 with the server validator's issues as inline diagnostics (line,
// step). The text is owned by the page; edits from the graph arrive through `value`.
import { yaml, yamlLanguage } from "@codemirror/lang-yaml";
import { forceLinting, linter, lintGutter, type Diagnostic } from "@codemirror/lint";
import { EditorView, basicSetup } from "codemirror";
import { useEffect, useRef } from "react";
import { schemaCompletion } from "./completion";
import type { Issue, Schema } from "./types";

export function YamlEditor({
  value,
  issues,
  schema,
  onChange,
}: {
  value: string;
  issues: Issue[];
  schema: Schema | null;
  onChange: (text: string) => void;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const issuesRef = useRef<Issue[]>(issues);
  const changed = useRef(onChange);
  changed.current = onChange;
  issuesRef.current = issues;
  const schemaRef = useRef<Schema | null>(schema);
  schemaRef.current = schema;

  useEffect(() => {
    const lint = linter(
      (v): Diagnostic[] =>
        issuesRef.current.map((issue) => {
          const line = v.state.doc.line(Math.min(Math.max(issue.line ?? 1, 1), v.state.doc.lines));
          return {
            from: line.from,
            to: line.to,
            severity: issue.level === "error" ? "error" : "warning",
            message: issue.step ? `step '${issue.step}': ${issue.message}` : issue.message,
          };
        }),
      { delay: 0 },
    );
    const editor = new EditorView({
      doc: value,
      parent: host.current!,
      extensions: [
        basicSetup,
        yaml(),
        yamlLanguage.data.of({ autocomplete: schemaCompletion(() => schemaRef.current) }),
        lintGutter(),
        lint,
        EditorView.updateListener.of((u) => {
          if (u.docChanged) changed.current(u.state.doc.toString());
        }),
      ],
    });
    view.current = editor;
    return () => editor.destroy();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    const editor = view.current;
    if (editor && editor.state.doc.toString() !== value) {
      editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: value } });
    }
  }, [value]);

  useEffect(() => {
    // Re-run the linter with the new issues.
    if (view.current) forceLinting(view.current);
  }, [issues]);

  return <div className="yaml-editor" data-testid="yaml-editor" ref={host} />;
}
