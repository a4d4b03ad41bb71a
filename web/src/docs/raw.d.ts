/** Files imported as text with Vite's `?raw` suffix (the user guide). */
declare module "*.md?raw" {
  const text: string;
  export default text;
}
