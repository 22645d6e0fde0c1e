/** Poll `check` every `everyMs` until it returns true; false once `attempts` polls have all said no. */
export async function until (check: () => Promise<boolean>, attempts = 600, everyMs = 100): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    if (await check()) return true
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
  return false
}
