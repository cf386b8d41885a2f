/** Vite's `?raw` imports: a file's text, for tests that check documentation against fixtures. */
declare module "*.md?raw" {
  const text: string;
  export default text;
}
