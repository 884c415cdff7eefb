import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The API serves dist/ at / (rb_api.console); `npm run dev` proxies the API of a running `rb up`.
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1200 },
  server: {
    proxy: {
      "/api": process.env.RB_API_URL ?? "http://127.0.0.1:8080",
      "/console": process.env.RB_API_URL ?? "http://127.0.0.1:8080",
    },
  },
});
