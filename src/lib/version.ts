/** The version every endpoint and health document reports (the guide shows 0.1.0). */
export const VERSION = '0.1.0';
