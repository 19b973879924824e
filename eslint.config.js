import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable', process: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The live cluster page's script runs in the browser as a plain script.
    files: ['src/router/page/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: { window: 'readonly', document: 'readonly', fetch: 'readonly', EventSource: 'readonly', getComputedStyle: 'readonly', setTimeout: 'readonly' },
    },
  },
  {
    files: ['src/bin/**', 'bench/**', 'scripts/**', 'test/**', 'src/demo/**', 'src/cli/**'],
    rules: { 'no-console': 'off' },
  },
);
