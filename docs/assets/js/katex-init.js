// Typeset the math on every page with the vendored KaTeX (no network needed).
//
// Two sources of math reach the browser:
//  * Markdown pages and API docstrings go through pymdownx.arithmatex (generic mode), which
//    wraps each formula as \( ... \) or \[ ... \] in an element with class "arithmatex";
//  * notebook cells rendered by mkdocs-jupyter keep their $ ... $ and $$ ... $$ as plain text.
// Auto-render over the whole article handles both, and skips <pre> and <code> by itself.
(function () {
  "use strict";

  var options = {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "\\[", right: "\\]", display: true },
      { left: "\\(", right: "\\)", display: false },
      { left: "$", right: "$", display: false },
    ],
    // Hidden copies of each notebook code cell feed the copy button: leave their text alone.
    ignoredClasses: ["clipboard-copy-txt"],
    throwOnError: false, // show a bad formula in red instead of stopping the page
  };

  function typeset() {
    if (typeof renderMathInElement !== "function") {
      return;
    }
    var root = document.querySelector("article") || document.body;
    renderMathInElement(root, options);
  }

  // Material's instant navigation swaps the page without a reload and signals it on document$.
  if (typeof document$ !== "undefined" && document$.subscribe) {
    document$.subscribe(typeset);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", typeset);
  } else {
    typeset();
  }
})();
