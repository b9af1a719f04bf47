// The Vercel AI SDK against the sidecar: `node ai_sdk.mjs <scenario>`, printing one JSON line.
// SIDECAR_URL is the sidecar's root URL, MODEL the model to ask for, PROVIDER which provider drives
// it: "openai" (`openai(model)`, the Responses API), "openai-chat" (`openai.chat(model)`, chat
// completions) or "anthropic" (`anthropic(model)`, the Messages API).
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { APICallError, generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const baseURL = `${process.env.SIDECAR_URL}/v1`;
const apiKey = "sk-app-placeholder";
const id = process.env.MODEL;
const model = {
  openai: () => createOpenAI({ baseURL, apiKey })(id),
  "openai-chat": () => createOpenAI({ baseURL, apiKey }).chat(id),
  anthropic: () => createAnthropic({ baseURL, apiKey })(id),
}[process.env.PROVIDER]();
const common = { model, maxRetries: 0 };

const scenarios = {
  async text() {
    const result = await generateText({ ...common, system: "Be brief.", prompt: "Say hello" });
    return { text: result.text, finishReason: result.finishReason, usage: result.usage };
  },
  async stream() {
    const result = streamText({ ...common, prompt: "Say hello" });
    const chunks = [];
    for await (const chunk of result.textStream) chunks.push(chunk);
    return { chunks, text: await result.text, usage: await result.usage };
  },
  async tools() {
    const calls = [];
    const result = await generateText({
      ...common,
      prompt: "What is the weather in Paris?",
      tools: {
        get_weather: tool({
          description: "The weather in a city.",
          inputSchema: z.object({ city: z.string() }),
          execute: async ({ city }) => {
            calls.push(city);
            return `Sunny in ${city}`;
          },
        }),
      },
      stopWhen: stepCountIs(5),
    });
    return { text: result.text, calls, steps: result.steps.length };
  },
  async object() {
    const result = await generateObject({
      ...common,
      prompt: "Describe a city.",
      schema: z.object({ city: z.string(), sunny: z.boolean() }),
    });
    return { object: result.object };
  },
  async refused() {
    try {
      await generateText({ ...common, prompt: "Say hello" });
    } catch (error) {
      if (!APICallError.isInstance(error)) throw error;
      return { error: error.name, status: error.statusCode, message: error.message };
    }
    throw new Error("the request was not refused");
  },
};

console.log(JSON.stringify(await scenarios[process.argv[2]]()));
