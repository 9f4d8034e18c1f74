// Preact, its hooks and htm, from the vendored UMD files that index.html loads before this module
// (vendor/README.md). Everything the page renders goes through Preact, which sets text and
// attributes through the DOM: nothing a caller said is ever parsed as HTML.
const { h, render, Fragment, createContext } = window.preact;

export const {
  useState,
  useEffect,
  useRef,
  useMemo,
  useCallback,
  useContext,
  useLayoutEffect,
} = window.preactHooks;
export const html = window.htm.bind(h);
export { h, render, Fragment, createContext };
