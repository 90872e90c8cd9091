// Waits shared by the bench sections: background work a measurement must not share the worker with.

/** Publishing a lesson queues an AI explanation per step (up to 200) for
 *  the queue consumer: background work of the publish, not part of what a
 *  section measures. Wait until every one has finished, so that it never
 *  shares the worker with a measurement (before this wait, the 200 jobs of
 *  the fan-out lesson ran during the first session: its rounds took 100–600
 *  ms until they were done, then 3–5 ms). */
export async function explanationsDone(api, token, lessonId, version) {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const res = await api.call("GET", `/v1/lessons/${lessonId}/versions/${version}/explanations`, { token });
    if (res.status !== 200) throw new Error(`explanations: ${res.status} ${res.text?.slice(0, 300)}`);
    const r = res.json;
    const open = r.explanations.filter((e) => e.status !== "succeeded" && e.status !== "failed").length;
    if (open === 0) return r.explanations.length;
    if (Date.now() > deadline) throw new Error(`${open} publish-time explanations still open after 180 s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
