/**
 * `useNow(15_000)`: the current time, renewed every `intervalMs` milliseconds, so relative
 * times ("3 min ago") on a page that stays open keep moving.
 */
import { useEffect, useState } from "react";

export function useNow(intervalMs = 15_000): Date {
  const [now, setNow] = useState(() => new Date());
  useEffect(() => {
    const timer = setInterval(() => setNow(new Date()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}
