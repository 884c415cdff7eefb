// The YAML view: CodeMirror 6 with the server validator's issues as inline diagnostics (line,
// step). The text is owned by the page; edits from the graph arrive through `value`.
import { yaml } from "@codemirror/lang-yaml";
import { linter, lintGutter, type Diagnostic } from "@codemirror/lint";
import { EditorView, basicSetup } from "codemirror";
import { useEffect, useRef } from "react";
import type { Issue } from "./types";

export function YamlEditor({ value, issues, onChange }: { value: string; issues: Issue[]; onChange: (text: string) => void }) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const issuesRef = useRef<Issue[]>(issues);
  const changed = useRef(onChange);
  changed.current = onChange;
  issuesRef.current = issues;

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
    // Re-run the linter with the new issues: a no-op transaction is enough for forceLinting.
    const editor = view.current;
    if (editor) import("@codemirror/lint").then(({ forceLinting }) => forceLinting(editor));
  }, [issues]);

  return <div className="yaml-editor" data-testid="yaml-editor" ref={host} />;
}
