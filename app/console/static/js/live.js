// Hooks that keep a page current: the global feed followed from its head, debounced refreshes, a clock.
import { useEffect, useRef, useState } from "preact/hooks";
import { feedHead, followEvents, isAbort } from "./api.js";

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
  });

// Calls onEvent for every job event committed from now on (GET /api/v1/events, followed), and once
// with null when the feed's head is known (covering what committed since the page loaded);
// reconnects from the last position it saw when the stream drops.
export function useFeed(onEvent) {
  const latest = useRef(onEvent);
  latest.current = onEvent;
  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    (async () => {
      let position = null;
      while (!signal.aborted) {
        try {
          if (position === null) {
            position = await feedHead(signal);
            latest.current(null); // what committed between the page's first load and the head
          }
          await followEvents("/api/v1/events", {
            after: position,
            signal,
            onEvent: (event) => {
              position = event.position;
              latest.current(event);
            },
          });
        } catch (error) {
          // A refused token stops here: the page starts again once a token is entered.
          if (isAbort(error) || signal.aborted || error.status === 401) return;
        }
        await sleep(1000, signal);
      }
    })();
    return () => controller.abort();
  }, []);
}

// A function that runs `fn` at most once per `ms`, trailing (the last call always leads to a run).
export function useThrottled(fn, ms) {
  const latest = useRef(fn);
  latest.current = fn;
  const timer = useRef(null);
  useEffect(() => () => clearTimeout(timer.current), []);
  const trigger = useRef(() => {
    if (timer.current !== null) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      latest.current();
    }, ms);
  });
  return trigger.current;
}

// The current time, re-rendering every `ms` (for ages such as "heartbeat 2 s ago").
export function useNow(ms = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

// Load `load(signal)` on mount and whenever `deps` change; `reload()` loads again in place.
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const latest = useRef(load);
  latest.current = load;
  const run = useRef(null);
  run.current = async () => {
    const mine = ++generation.current;
    try {
      const data = await latest.current();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current && !isAbort(error)) setState((s) => ({ ...s, error, loading: false }));
    }
  };
  useEffect(() => {
    run.current();
    return () => {
      generation.current++;
    };
  }, deps);
  return [state, () => run.current()];
}
