import { lazy, StrictMode, Suspense, useCallback, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { api, SIGNED_OUT, storedKey, storeKey, type Identity } from "./api";
import { Alerts } from "./pages/Alerts";
import { Approvals } from "./pages/Approvals";
import { Execution } from "./pages/Execution";
import { Executions } from "./pages/Executions";
import { Runbook } from "./pages/Runbook";
import { Runbooks } from "./pages/Runbooks";
import { Schedules } from "./pages/Schedules";
import { SignIn } from "./pages/SignIn";
import { href, useRoute } from "./route";
import "./styles.css";

// The editor (CodeMirror, its own chunk) loads when first opened.
const Editor = lazy(() => import("./pages/Editor").then((m) => ({ default: m.Editor })));

const THEME = "rb.theme";
const SECTIONS: [string, string][] = [
  ["runbooks", "Runbooks"],
  ["editor", "Editor"],
  ["executions", "Executions"],
  ["approvals", "Approvals"],
  ["schedules", "Schedules"],
  ["alerts", "Alerts"],
];

function useTheme(): [string, () => void] {
  const [theme, setTheme] = useState(
    () => localStorage.getItem(THEME) ?? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"),
  );
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem(THEME, theme);
  }, [theme]);
  return [theme, () => setTheme((t) => (t === "dark" ? "light" : "dark"))];
}

function App() {
  const [who, setWho] = useState<Identity | null>(null);
  const [checking, setChecking] = useState(() => storedKey() !== null);
  const [theme, toggleTheme] = useTheme();
  const route = useRoute();

  const signOut = useCallback(() => {
    storeKey(null);
    setWho(null);
  }, []);

  useEffect(() => {
    window.addEventListener(SIGNED_OUT, signOut);
    return () => window.removeEventListener(SIGNED_OUT, signOut);
  }, [signOut]);

  useEffect(() => {
    if (!storedKey()) return;
    api<Identity>("/console/identity")
      .then(setWho)
      .catch(() => signOut())
      .finally(() => setChecking(false));
  }, [signOut]);

  const section = route[0] ?? "runbooks";
  let page: JSX.Element;
  if (!who) page = checking ? <p className="muted">Signing in…</p> : <SignIn onSignedIn={setWho} />;
  else if (section === "editor") page = (
      <Suspense fallback={<p className="muted">Loading the editor…</p>}>
        <Editor key={route[1] ?? "new"} id={route[1] ?? null} who={who} />
      </Suspense>
    );
  else if (section === "runbooks" && route[1]) page = <Runbook id={route[1]} who={who} />;
  else if (section === "executions" && route[1]) page = <Execution id={route[1]} who={who} />;
  else if (section === "executions") page = <Executions />;
  else if (section === "approvals") page = <Approvals who={who} />;
  else if (section === "schedules") page = <Schedules who={who} />;
  else if (section === "alerts") page = <Alerts />;
  else page = <Runbooks />;

  return (
    <>
      <a className="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header className="top">
        <a className="brand" href={href("runbooks")}>
          rb
        </a>
        {who && (
          <nav aria-label="Sections">
            {SECTIONS.map(([id, label]) => (
              <a key={id} href={href(id)} aria-current={section === id ? "page" : undefined}>
                {label}
              </a>
            ))}
          </nav>
        )}
        <span className="spacer" />
        <button type="button" className="ghost" onClick={toggleTheme} aria-label={`Switch to ${theme === "dark" ? "light" : "dark"} theme`}>
          {theme === "dark" ? "☀" : "☾"}
        </button>
        {who && (
          <>
            <span className="who" data-testid="who" title={who.roles.join(", ")}>
              {who.actor}
            </span>
            <button type="button" className="ghost" onClick={signOut}>
              Sign out
            </button>
          </>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
