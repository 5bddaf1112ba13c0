// The ipywidgets HTML manager typesets widget labels with MathJax 2's `MathJax.Hub.Queue`; MathJax 3
// has no Hub, so pages with both math and widgets threw "reading 'Queue'". Loaded before MathJax, this
// gives whatever object becomes `window.MathJax` a Hub whose Queue typesets with MathJax 3's API.
(function () {
  var current = window.MathJax;
  function withHub(mj) {
    if (mj && typeof mj === "object" && !mj.Hub) {
      mj.Hub = {Queue: function () { if (current && current.typesetPromise) { current.typesetPromise(); } }};
    }
    return mj;
  }
  Object.defineProperty(window, "MathJax", {configurable: true, enumerable: true,
    get: function () { return current; }, set: function (v) { current = withHub(v); }});
})();
