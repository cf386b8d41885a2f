/**
 * Charts as server-rendered SVG: no chart library, no client code, nothing for the CSP to allow.
 * Each is an image with a title and a description (role="img"), a legend, axis labels, and the
 * same numbers in a table beside it for anyone who cannot see the bars.
 */
import type { FC } from "hono/jsx";
import type { BucketCount } from "../storage/overview";

const WIDTH = 720;
const HEIGHT = 220;
const LEFT = 44;
const RIGHT = 8;
const TOP = 10;
const BOTTOM = 34;

export interface StackedBarsProps<S extends string> {
  id: string;
  title: string;
  description: string;
  series: readonly S[];
  counts: readonly BucketCount<S>[];
  /** Bucket starts (Unix seconds), oldest first: every bucket, empty ones too. */
  buckets: readonly number[];
  bucketLabel: string;
  /** How a bucket is written under its bar; the time of day (HH:MM, UTC) by default. */
  label?: (seconds: number) => string;
}

function timeLabel(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(11, 16);
}

/** A rounded-up axis maximum with 4 even steps. */
function axisMax(value: number): number {
  if (value <= 4) return 4;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    const max = Math.ceil(value / (step * magnitude)) * step * magnitude;
    if (max / 4 === Math.round(max / 4)) return max;
  }
  return value;
}

export function StackedBars<S extends string>(props: StackedBarsProps<S>): ReturnType<FC> {
  const byBucket = new Map<number, Map<S, number>>();
  const totals = new Map<S, number>(props.series.map((s) => [s, 0]));
  for (const { bucket, series, n } of props.counts) {
    const row = byBucket.get(bucket) ?? new Map<S, number>();
    row.set(series, (row.get(series) ?? 0) + n);
    byBucket.set(bucket, row);
    totals.set(series, (totals.get(series) ?? 0) + n);
  }
  const stackHeights = props.buckets.map((b) => [...(byBucket.get(b)?.values() ?? [])].reduce((a, n) => a + n, 0));
  const max = axisMax(Math.max(0, ...stackHeights));
  const plotWidth = WIDTH - LEFT - RIGHT;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const slot = plotWidth / Math.max(1, props.buckets.length);
  const barWidth = Math.max(1, slot * 0.8);
  const y = (value: number) => TOP + plotHeight - (value / max) * plotHeight;
  const ticks = [0, 1, 2, 3, 4].map((i) => (max * i) / 4);
  const labelEvery = Math.max(1, Math.ceil(props.buckets.length / 6));
  const titleId = `${props.id}-title`;
  const descId = `${props.id}-desc`;
  const total = [...totals.values()].reduce((a, n) => a + n, 0);
  return (
    <figure class="chart" id={props.id}>
      <svg
        role="img"
        aria-labelledby={`${titleId} ${descId}`}
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        preserveAspectRatio="none"
        class="chart-svg"
      >
        <title id={titleId}>{props.title}</title>
        <desc id={descId}>
          {`${props.description} ${total} in all: ${props.series.map((s) => `${s} ${totals.get(s) ?? 0}`).join(", ")}.`}
        </desc>
        {ticks.map((tick) => (
          <g class="tick">
            <line x1={LEFT} x2={WIDTH - RIGHT} y1={y(tick)} y2={y(tick)} class="grid" />
            <text x={LEFT - 6} y={y(tick) + 4} text-anchor="end" class="axis-label">
              {String(Math.round(tick * 10) / 10)}
            </text>
          </g>
        ))}
        {props.buckets.map((bucket, index) => {
          let base = 0;
          const row = byBucket.get(bucket);
          return (
            <g>
              {props.series.map((series) => {
                const n = row?.get(series) ?? 0;
                if (n === 0) return null;
                const top = y(base + n);
                const height = y(base) - top;
                base += n;
                return (
                  <rect
                    x={LEFT + index * slot + (slot - barWidth) / 2}
                    y={top}
                    width={barWidth}
                    height={height}
                    class={`bar c-${series}`}
                  >
                    <title>{`${(props.label ?? timeLabel)(bucket)} ${series}: ${n}`}</title>
                  </rect>
                );
              })}
              {(props.buckets.length - 1 - index) % labelEvery === 0 ? (
                <text
                  x={index === props.buckets.length - 1 ? WIDTH - RIGHT : LEFT + index * slot + slot / 2}
                  y={HEIGHT - BOTTOM + 16}
                  text-anchor={index === props.buckets.length - 1 ? "end" : "middle"}
                  class="axis-label"
                >
                  {(props.label ?? timeLabel)(bucket)}
                </text>
              ) : null}
            </g>
          );
        })}
        <text x={LEFT + plotWidth / 2} y={HEIGHT - 4} text-anchor="middle" class="axis-title">
          {`Time (UTC), ${props.bucketLabel} per bar`}
        </text>
        <text
          x={12}
          y={TOP + plotHeight / 2}
          text-anchor="middle"
          class="axis-title"
          transform={`rotate(-90 12 ${TOP + plotHeight / 2})`}
        >
          Count
        </text>
      </svg>
      <figcaption>
        <ul class="legend">
          {props.series.map((series) => (
            <li>
              <span class={`swatch c-${series}`} aria-hidden="true" />
              {series} <strong data-series={series}>{String(totals.get(series) ?? 0)}</strong>
            </li>
          ))}
        </ul>
        <details>
          <summary>{`${props.title}: the numbers`}</summary>
          <section class="table-box" aria-label={`${props.title}: the numbers`} tabindex={0}>
            <table class="chart-data" id={`${props.id}-data`}>
              <thead>
                <tr>
                  <th scope="col">From (UTC)</th>
                  {props.series.map((s) => (
                    <th scope="col">{s}</th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {props.buckets
                  .filter((b) => byBucket.has(b))
                  .map((bucket) => (
                    <tr>
                      <th scope="row">{new Date(bucket * 1000).toISOString().slice(0, 16).replace("T", " ")}</th>
                      {props.series.map((s) => (
                        <td>{String(byBucket.get(bucket)?.get(s) ?? 0)}</td>
                      ))}
                    </tr>
                  ))}
              </tbody>
            </table>
          </section>
        </details>
      </figcaption>
    </figure>
  );
}
