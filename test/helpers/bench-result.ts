/**
 * One summarized bench scenario for the bench's unit tests: a 128 MiB layer at 100 mbit, with
 * whatever a test sets on top (times, processes, busy share, link figures…).
 */
import { summarize, type ScenarioResult } from '../bench/figures.js'

type SummarizeInput = Parameters<typeof summarize>[0]

export function scenarioResult (over: Partial<SummarizeInput> & Pick<SummarizeInput, 'system' | 'times'>): ScenarioResult {
  return summarize({
    image: '1x128MiB', imageBytes: 128 * 2 ** 20, layers: 1, hosts: over.times.length, rateBps: 100e6,
    failures: 0, origin: { bytes: 0, blobGets: 0 }, processes: [], machineBusy: 0.5, loadAtStart: 1,
    settle: { waitedMs: 0, busy: 0 },
    ...over
  })
}
