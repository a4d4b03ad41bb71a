/**
 * Samples of the fleet's availability taken while the console is open (kept for the tab in
 * sessionStorage): the availability chart's data when the API keeps no hourly history.
 */
import { useEffect, useState } from "react";

export interface Sample {
  time: string;
  online: number;
  available: number;
}

export const SAMPLES_KEY = "aios.availability-samples";
export const MAX_SAMPLES = 360;
/** Samples closer than this to the previous one replace it, ms. */
export const MIN_SPACING_MS = 20_000;

export function loadSamples(storage: Pick<Storage, "getItem"> = sessionStorage): Sample[] {
  try {
    const parsed = JSON.parse(storage.getItem(SAMPLES_KEY) ?? "[]") as unknown;
    return Array.isArray(parsed) ? (parsed as Sample[]).filter((s) => typeof s?.time === "string") : [];
  } catch {
    return [];
  }
}

/** `samples` with `sample` added (replacing the last one when too close), at most MAX_SAMPLES. */
export function addSample(samples: readonly Sample[], sample: Sample): Sample[] {
  const last = samples[samples.length - 1];
  const next = [...samples];
  if (last && Date.parse(sample.time) - Date.parse(last.time) < MIN_SPACING_MS) next.pop();
  next.push(sample);
  return next.slice(-MAX_SAMPLES);
}

/** Record `sample` whenever it changes; returns every sample kept. */
export function useAvailabilitySamples(sample: Sample | null): Sample[] {
  const [samples, setSamples] = useState<Sample[]>(() => loadSamples());
  const stamp = sample ? `${sample.time}|${sample.online}|${sample.available}` : null;
  useEffect(() => {
    if (!sample) return;
    setSamples((current) => {
      const next = addSample(current, sample);
      try {
        sessionStorage.setItem(SAMPLES_KEY, JSON.stringify(next));
      } catch {
        // storage full or unavailable: the chart keeps what it has in memory
      }
      return next;
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [stamp]);
  return samples;
}
