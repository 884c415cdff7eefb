// Routing inside the page by the URL's fragment (#/runbooks/rb-000-hello): the API serves one
// page at / and never sees the console's paths.
import { useEffect, useState } from "react";

export function currentRoute(): string[] {
  const hash = window.location.hash.replace(/^#\/?/, "");
  const [path] = hash.split("?");
  return path.split("/").filter(Boolean).map(decodeURIComponent);
}

export function useRoute(): string[] {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const changed = () => setRoute(currentRoute());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

export const href = (...parts: string[]): string => `#/${parts.map(encodeURIComponent).join("/")}`;

export function go(...parts: string[]): void {
  window.location.hash = href(...parts);
}
