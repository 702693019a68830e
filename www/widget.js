// <monoscope-widget>: embeds the monoscope page (compact mode, chosen panels) in a course page
// on the same site.
//
//   <script src="/path/to/monoscope/widget.js" defer></script>
//   <monoscope-widget prompt="a big red circle|a small blue square"
//                     image="/path/to/monoscope/assets/demo/images/scene-1.png"
//                     panels="features,similarity" feature="112" height="600"></monoscope-widget>
//
// Attributes (all optional): model, bundle, prompt ("|" separates several), image (same-site
// URLs, "|" separated), feature, panels (inputs,features,similarity,dictionary,feature,heatmap),
// backend (auto|webgpu|cpu), engines (1-8), height (CSS length or pixels; default: fit the
// content), and src (the app page; default: index.html next to this script). The app runs in
// an iframe, so its CSP and worker stay its own; relative image/model paths are resolved
// against the course page before they are handed to the app.

(() => {
  // Where this script was loaded from: the app lives next to it. document.currentScript is
  // null in module scripts, so fall back to the script element that names widget.js.
  const script =
    document.currentScript ||
    Array.from(document.querySelectorAll("script[src]")).find((s) => /(^|\/)widget\.js([?#]|$)/.test(s.src));
  const APP_URL = new URL("index.html", script ? script.src : location.href);
  const PASSED = ["model", "bundle", "feature", "panels", "backend", "engines", "wasm"];

  class MonoscopeWidget extends HTMLElement {
    static get observedAttributes() {
      return ["model", "bundle", "prompt", "image", "feature", "panels", "backend", "engines", "height", "src"];
    }

    constructor() {
      super();
      this.frame = null;
      this.onMessage = (ev) => {
        if (!this.frame || ev.source !== this.frame.contentWindow) return;
        if (ev.origin !== new URL(this.frame.src).origin) return;
        const d = ev.data;
        if (d && d.type === "monoscope:height" && !this.hasAttribute("height") && Number.isFinite(d.height)) {
          this.frame.style.height = `${Math.max(120, Math.ceil(d.height))}px`;
        }
      };
    }

    connectedCallback() {
      if (!this.frame) {
        const root = this.attachShadow({ mode: "open" });
        this.frame = document.createElement("iframe");
        // CSSOM, not a style attribute: works under a strict style-src on the course page.
        Object.assign(this.frame.style, { width: "100%", boxSizing: "border-box", border: "1px solid #8884", borderRadius: "6px", display: "block" });
        this.frame.setAttribute("loading", "lazy");
        this.style.display = "block";
        root.append(this.frame);
      }
      window.addEventListener("message", this.onMessage);
      this.update();
    }

    disconnectedCallback() {
      window.removeEventListener("message", this.onMessage);
    }

    attributeChangedCallback() {
      if (this.frame) this.update();
    }

    // The app URL for the current attributes.
    appUrl() {
      const url = new URL(this.getAttribute("src") || APP_URL.href, location.href);
      const q = new URLSearchParams();
      q.set("embed", "1");
      for (const name of PASSED) {
        const v = this.getAttribute(name);
        if (v !== null && v !== "") q.set(name, v);
      }
      for (const p of (this.getAttribute("prompt") || "").split("|")) if (p.trim()) q.append("prompt", p.trim());
      for (const i of (this.getAttribute("image") || "").split("|")) {
        // Resolve against the course page, so authors write paths as they see them there.
        if (i.trim()) q.append("image", new URL(i.trim(), location.href).href);
      }
      url.search = q.toString();
      return url.href;
    }

    update() {
      const src = this.appUrl();
      if (this.frame.src !== src) this.frame.src = src;
      const h = this.getAttribute("height");
      this.frame.style.height = h ? (/^\d+$/.test(h) ? `${h}px` : h) : this.frame.style.height || "480px";
      const panels = this.getAttribute("panels") || "features";
      this.frame.title = this.getAttribute("title") || `monoscope: ${panels.split(",").join(", ")}`;
    }
  }

  if (!customElements.get("monoscope-widget")) customElements.define("monoscope-widget", MonoscopeWidget);
})();
