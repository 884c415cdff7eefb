import { useState, type FormEvent } from "react";
import { api, storeKey, type Identity } from "../api";

export function SignIn({ onSignedIn }: { onSignedIn: (who: Identity) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState("");

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError("");
    try {
      const who = await api<Identity>("/console/identity", { key: key.trim() });
      storeKey(key.trim());
      onSignedIn(who);
    } catch (e) {
      setError(e instanceof Error && e.message.startsWith("401") ? "That key is invalid, expired or revoked." : String(e));
    }
  }

  return (
    <form className="card sign-in" onSubmit={submit}>
      <h1>Sign in</h1>
      <p className="muted">
        With an API key (<code>rb keys create</code>; <code>rb up</code> prints the admin key). It stays in this
        tab only.
      </p>
      <label htmlFor="api-key">API key</label>
      <input id="api-key" name="api-key" type="password" autoComplete="off" autoFocus required value={key} onChange={(e) => setKey(e.target.value)} />
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" className="primary">
        Sign in
      </button>
    </form>
  );
}
